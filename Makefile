# predmaint — every target installs what it needs on first use (into .tools/ and .venv/).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
UV := .tools/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# uv uses the machine's Python 3.11 and never downloads an interpreter.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile bytecode at install: start-up stays fast even where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE := 1
PYTEST_ARGS ?=
BENCH ?=

.PHONY: help install demo test test-fast lint format bench lock clean distclean system-deps k8s-tools

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PYTHON)
	touch $@

install: $(VENV)/.installed ## Create .venv with the locked dependencies and predmaint itself

demo: install ## Run the main job on the embedded default (no cluster)
	$(BIN)/predmaint demo

# The container tests need an engine: docker/engine.sh starts dockerd when none answers (installing
# Debian's docker.io if needed) and stops it again when pytest is done, whatever pytest returned.
test: lint system-deps k8s-tools kfp-spec ## Run the whole test suite: ruff, the images, then pytest
	docker/engine.sh start
	trap 'docker/engine.sh stop' EXIT; \
	$(MAKE) --no-print-directory images && $(BIN)/pytest $(PYTEST_ARGS)

test-fast: install ## The inner loop: pytest without the slow tests (no images, no engine)
	$(BIN)/pytest -m "not slow" -x -q $(PYTEST_ARGS)

# helm and kubeconform, pinned and built from source with the machine's Go into .tools/bin, once
# per version (a few minutes for helm on 2 cores): the chart tests render and validate with them.
# The empty .version-* files make a changed pin rebuild the tool. Built this way, helm's default
# Kubernetes version is 1.20: the tests always pass --kube-version (tests/k8s.py).
HELM_VERSION := v3.19.0
KUBECONFORM_VERSION := v0.7.0
K8S_TOOLS := .tools/bin
GO_INSTALL := GOBIN=$(CURDIR)/$(K8S_TOOLS) GOTOOLCHAIN=local CGO_ENABLED=0 go install
NEED_GO := command -v go >/dev/null || { echo "make k8s-tools builds helm and kubeconform with Go: install Go first"; exit 1; }

$(K8S_TOOLS)/.version-%:
	mkdir -p $(K8S_TOOLS)
	touch $@

$(K8S_TOOLS)/helm: $(K8S_TOOLS)/.version-helm-$(HELM_VERSION)
	@$(NEED_GO)
	$(GO_INSTALL) -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	touch $@

$(K8S_TOOLS)/kubeconform: $(K8S_TOOLS)/.version-kubeconform-$(KUBECONFORM_VERSION)
	@$(NEED_GO)
	$(GO_INSTALL) github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	touch $@

k8s-tools: $(K8S_TOOLS)/helm $(K8S_TOOLS)/kubeconform ## Build the pinned helm and kubeconform into .tools/bin

# The protobuf definitions of the Kubeflow Pipelines release the manifests pin (KFP_RELEASE, the
# ?ref= of manifests/kubeflow-pipelines/cluster-scoped), unpacked once per release into
# .tools/kfp-spec/<release>/ from wheels whose hashes spec-requirements.txt fixes:
# tests/test_kfp_backend.py parses the compiled pipeline with them, as strictly as that backend.
KFP_RELEASE := $(shell sed -n 's/.*?ref=\([0-9.]*\)$$/\1/p' manifests/kubeflow-pipelines/cluster-scoped/kustomization.yaml)
KFP_SPEC_REQUIREMENTS := manifests/kubeflow-pipelines/spec-requirements.txt
KFP_SPEC := .tools/kfp-spec/$(KFP_RELEASE)

$(KFP_SPEC)/.installed: $(KFP_SPEC_REQUIREMENTS) | $(UV)
	@grep -q "^kfp-kubernetes==$(KFP_RELEASE) " $< && grep -q "^kfp-pipeline-spec==$(KFP_RELEASE) " $< || \
		{ echo "make kfp-spec: $< does not pin release $(KFP_RELEASE) of the kustomizations: update its versions and hashes"; exit 1; }
	rm -rf $(KFP_SPEC) $(KFP_SPEC).tmp
	$(UV) pip install --quiet --python $(PYTHON) --no-deps --require-hashes --only-binary :all: --target $(KFP_SPEC).tmp -r $<
	mv $(KFP_SPEC).tmp $(KFP_SPEC)
	touch $@

.PHONY: kfp-spec
kfp-spec: $(KFP_SPEC)/.installed ## Unpack the pinned KFP release's protobuf definitions into .tools/kfp-spec

# Debian packages used for real: the Mosquitto MQTT broker (ingestion tests), Chromium and its
# driver (the web page and report tests), wrk (the serving benchmark), PostgreSQL (the backend
# store of the MLflow image in the container tests).
DEBIAN_PACKAGES := mosquitto chromium chromium-driver wrk postgresql
MISSING := $(strip $(if $(shell command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null),,mosquitto) \
	$(if $(shell command -v chromium),,chromium) $(if $(shell command -v chromedriver),,chromium-driver) \
	$(if $(shell command -v wrk),,wrk) \
	$(if $(shell command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null),,postgresql))
system-deps: ## Install the Debian packages the tests and benchmarks need, if missing
ifneq ($(MISSING),)
	@if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: run 'sudo apt-get install $(MISSING)' or make test as root"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(MISSING)
endif

lint: install ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The images benchmark builds and runs containers: the engine is started (and stopped) as for make test.
bench: install system-deps ## Run the benchmarks (BENCH="serving" for one) and rewrite docs/BENCHMARKS.md
	docker/engine.sh start
	trap 'docker/engine.sh stop' EXIT; $(BIN)/python -m benchmarks.run $(BENCH)

lock: $(UV) ## Re-resolve uv.lock after changing dependencies in pyproject.toml
	$(UV) lock --python $(PYTHON)

# Container images, tagged with the project version: the compiled pipeline names
# predmaint/pipeline:<version>. REGISTRY (e.g. registry.example.com/team) prefixes the names;
# empty, they are plain predmaint/serving, predmaint/pipeline and predmaint/mlflow. A pipeline
# image pushed under another name needs the pipeline compiled with PREDMAINT_PIPELINE_IMAGE set
# to it (docs/deploy.md).
REGISTRY ?=
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
DOCKER ?= docker
IMAGE_PREFIX := $(if $(REGISTRY),$(patsubst %/,%,$(REGISTRY))/,)predmaint
NEED_DOCKER = command -v $(DOCKER) >/dev/null || { echo "make $@: '$(DOCKER)' not found: install Docker (docs/deploy.md)"; exit 1; }; \
	$(DOCKER) info >/dev/null 2>&1 || { echo "make $@: '$(DOCKER)' cannot reach a Docker engine: start one (or set DOCKER_HOST) and retry"; exit 1; }

# The base: PYTHON_IMAGE when given; else the pinned python image if it can be had; else (no
# registry) the Debian base of `make base-image`, built once from Debian's packages.
# Builds use the host's network, so pip and uv reach the package index as this machine does.
PYTHON_IMAGE ?=
BUILD = $(DOCKER) build --network host --build-arg PYTHON_IMAGE="$$base"

.PHONY: images push base-image
base-image: ## Build the Python base from Debian bookworm packages (the air-gapped path; needs root)
	@$(NEED_DOCKER)
	DOCKER=$(DOCKER) docker/base-image.sh build

# Each builder stage is tagged too (predmaint/<image>-builder, never pushed): the stages an image
# replaced then become dangling and are pruned, while the current ones stay the cache of the next
# build. Without that, every source change left gigabytes behind (a full disk after a day's work).
# Only images built on the Debian base (its label) are pruned; nothing else of the engine's.
images: ## Build the serving, pipeline and MLflow images (REGISTRY=host/path to prefix them)
	@$(NEED_DOCKER)
	base=$$(PYTHON_IMAGE="$(PYTHON_IMAGE)" DOCKER=$(DOCKER) docker/base-image.sh resolve); \
	echo "images: building on $$base"; \
	for spec in serving:serving/Dockerfile pipeline:docker/pipeline.Dockerfile mlflow:docker/mlflow.Dockerfile; do \
		image=$${spec%%:*}; dockerfile=$${spec#*:}; \
		$(BUILD) --target builder -f $$dockerfile -t $(IMAGE_PREFIX)/$$image-builder:$(VERSION) . && \
		$(BUILD) -f $$dockerfile -t $(IMAGE_PREFIX)/$$image:$(VERSION) . || exit 1; \
	done; \
	$(DOCKER) image prune --force --filter label=org.predmaint.base-recipe

push: ## Build and push the images to REGISTRY (make push REGISTRY=registry.example.com/team)
	@test -n "$(REGISTRY)" || { echo "make push: set REGISTRY, e.g. make push REGISTRY=registry.example.com/team"; exit 1; }
	@$(NEED_DOCKER)
	$(MAKE) --no-print-directory images
	$(DOCKER) push $(IMAGE_PREFIX)/serving:$(VERSION)
	$(DOCKER) push $(IMAGE_PREFIX)/pipeline:$(VERSION)
	$(DOCKER) push $(IMAGE_PREFIX)/mlflow:$(VERSION)

clean: ## Remove local state (.predmaint/) and caches
	rm -rf .predmaint .pytest_cache .ruff_cache .ci/junit.xml

distclean: clean ## Also remove .venv and .tools
	rm -rf $(VENV) .tools
