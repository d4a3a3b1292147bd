# The S3-compatible artifact store: MinIO's server and its client mc, built from the Go module
# proxy (make cluster-tools), on the Debian base (the bucket Job runs mc under /bin/sh).
ARG BASE
FROM ${BASE}
COPY minio mc /usr/bin/
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp minio
USER 10001:10001
EXPOSE 9000 9001
ENTRYPOINT ["/usr/bin/minio"]
