# The MLflow tracking server of manifests/base/mlflow.yaml: MLflow (the same version as uv.lock)
# with the PostgreSQL driver and boto3, which MLflow's published image does not contain, so a
# backend store in PostgreSQL and artifacts in S3/MinIO work without installing at start-up.
# Build from the repository root:
#   docker build -f docker/mlflow.Dockerfile -t predmaint/mlflow:0.1.0 .     (or: make images)
#
# docker/mlflow-requirements.txt is a hash-pinned lock of docker/mlflow-requirements.in; pip
# installs exactly it (--require-hashes) and only from wheels. The base is pinned to an exact tag
# (see serving/Dockerfile for the digest note).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY docker/mlflow-requirements.txt /tmp/mlflow-requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: \
    -r /tmp/mlflow-requirements.txt

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin mlflow
COPY --from=builder /opt/venv /opt/venv
# Everything MLflow writes locally (temporary artifacts, caches under HOME) goes to /tmp, an
# emptyDir under the read-only root filesystem of the Deployment.
ENV PATH=/opt/venv/bin:${PATH} \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]
