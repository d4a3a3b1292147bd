# The MQTT broker: Debian's mosquitto package on the Debian base.
ARG BASE
FROM ${BASE}
# uid/gid 1883, as in the eclipse-mosquitto image (manifests/mosquitto runs as 1883).
RUN groupadd --gid 1883 mosquitto && useradd --uid 1883 --gid 1883 --home-dir /var/lib/mosquitto --no-create-home --shell /usr/sbin/nologin mosquitto \
    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/*
USER mosquitto
EXPOSE 1883
ENTRYPOINT ["/usr/sbin/mosquitto"]
CMD ["-c", "/mosquitto/config/mosquitto.conf"]
