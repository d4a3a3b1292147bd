# The pipeline image (PIPELINE_IMAGE in components/__init__.py): every KFP component of the
# predmaint-training pipeline, the drift CronJob (`predmaint drift check`) and the snapshot
# CronJob (`predmaint snapshot`, git + DVC) run in it. kfp and predmaint are installed here, so
# nothing is pip-installed at run time (components use install_kfp_package=False).
# Build from the repository root:
#   docker build -f docker/pipeline.Dockerfile -t predmaint/pipeline:0.1.0 .     (or: make images)
#
# The base is pinned to an exact tag (see serving/Dockerfile for the digest note); both images
# share it, so they share its layers too.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Must equal UV_VERSION in the Makefile (tests/test_images.py checks it).
ARG UV_VERSION=0.13.8
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /build
# The DVC remotes the chart offers (dvc.remote): the s3 extra (dvc[s3]) for the cluster's
# S3-compatible store, the gdrive extra (dvc[gdrive]) for Google Drive with a service account.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --extra s3 --extra gdrive --no-install-project --no-editable
COPY README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN uv sync --locked --no-dev --extra s3 --extra gdrive --no-editable

FROM ${PYTHON_IMAGE}
# git: DVC versions the store as a git repository (snapshot, pull_data). Not version-pinned:
# the pinned base fixes the Debian release, and Debian security updates replace exact versions.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
# The store volume may be owned by another uid than the pod's (KFP pods, CronJobs); without this
# git refuses it as "dubious ownership".
RUN git config --system --add safe.directory '*'
RUN groupadd --system --gid 10001 predmaint \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin predmaint
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY params.yaml ./
# As in the serving image: relative state (.predmaint/…) lands in /app/.predmaint, a volume
# under a read-only root filesystem; temporary files and caches go to /tmp.
RUN mkdir /app/.predmaint && chown 10001:10001 /app/.predmaint
# KFP runs `python3 -m kfp.dsl.executor_main`: the venv comes first on PATH. DVC's site cache
# defaults to /var/tmp/dvc and its usage analytics phone home; neither belongs in a pod.
# An empty mlflow.artifact_location lets the tracking server place a new experiment's artifacts
# (params.yaml's local .predmaint/mlartifacts would leave them in a pod that is gone after the run).
ENV PATH=/opt/venv/bin:${PATH} \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site-cache \
    DVC_NO_ANALYTICS=1 \
    PREDMAINT_MLFLOW__ARTIFACT_LOCATION="" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# KFP and the chart's CronJobs give the command; alone, the image shows the CLI.
CMD ["predmaint", "--help"]
