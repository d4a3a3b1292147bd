# MLflow's backend store: Debian's postgresql-15 on the Debian base, with the environment contract
# of the postgres image that manifests/base/postgres.yaml names (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA) and its postgres user's uid 70.
ARG BASE
FROM ${BASE}
RUN groupadd --gid 70 postgres && useradd --uid 70 --gid 70 --home-dir /var/lib/postgresql --no-create-home postgres \
    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15 \
    && ln -s /usr/lib/postgresql/15/bin/* /usr/local/bin/ 2>/dev/null; true
COPY postgres.entrypoint /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER 70:70
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
