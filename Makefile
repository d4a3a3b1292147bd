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

.PHONY: help install demo test test-fast lint format bench reliability lock clean distclean system-deps k8s-tools

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
# The images and the Go tools build side by side (-j3: downloads overlap compiles). The cluster
# tests (tests/test_cluster.py) start the cluster of cluster/cluster.sh and stop it again.
test: lint system-deps cluster-deps kfp-spec ## Run the whole test suite: ruff, images and tools, then pytest
	docker/engine.sh start
	trap 'docker/engine.sh stop' EXIT; \
	$(MAKE) --no-print-directory -j3 images k8s-tools cluster-tools && $(BIN)/pytest $(PYTEST_ARGS)

test-fast: install k8s-tools kfp-spec ## The inner loop: pytest without the slow tests (no images, no engine)
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

# The tests marked `reliability` (faults and hostile input at every boundary) run on real parts;
# their results become the table of docs/RELIABILITY.md. They need Mosquitto, not the engine.
reliability: install system-deps k8s-tools kfp-spec ## Run the fault and hostile-input tests and rewrite docs/RELIABILITY.md
	$(BIN)/python tests/reliability.py $(PYTEST_ARGS)

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

# A single-node Kubernetes built here (cluster/cluster.sh; docs/deploy.md, "No kind, no minikube"):
# Kubernetes v1.34 from the Go module proxy through the wrapper module cluster/k8s (its staging
# modules replaced with their published twins), Traefik through cluster/traefik, CoreDNS,
# local-path-provisioner, MinIO and mc at the versions below; etcd, containerd, the CNI plugins,
# conntrack and iptables from Debian. Built once into .tools/cluster/bin (about 20 minutes cold on
# 2 cores); a changed pin rebuilds what it names.
CLUSTER_BIN := .tools/cluster/bin
K8S_VERSION := $(shell sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$$/\1/p' cluster/k8s/go.mod)
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
TRAEFIK_VERSION := $(shell sed -n 's/^require github.com\/traefik\/traefik\/v3 \(v[0-9.]*\)$$/\1/p' cluster/traefik/go.mod)
COREDNS_VERSION := v1.15.0
LOCAL_PATH_VERSION := v0.0.37
# MinIO and mc publish no semantic versions: the module proxy serves these commits.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MC_VERSION := v0.0.0-20250313080218-cf909e1063a9
CLUSTER_GO := GOBIN=$(CURDIR)/$(CLUSTER_BIN) GOTOOLCHAIN=local CGO_ENABLED=0 go install -trimpath
K8S_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean
CLUSTER_DEBIAN := etcd-server containernetworking-plugins conntrack iptables containerd runc
CLUSTER_MISSING = $(strip $(if $(shell command -v etcd),,etcd-server) $(if $(wildcard /usr/lib/cni/bridge),,containernetworking-plugins) \
	$(if $(shell command -v conntrack),,conntrack) $(if $(shell command -v iptables),,iptables) \
	$(if $(shell command -v containerd),,containerd) $(if $(shell command -v runc),,runc))

$(CLUSTER_BIN)/.version-%:
	mkdir -p $(CLUSTER_BIN)
	touch $@

$(CLUSTER_BIN)/kubelet: $(CLUSTER_BIN)/.version-k8s-$(K8S_VERSION) cluster/k8s/go.mod cluster/k8s/go.sum
	@$(NEED_GO)
	cd cluster/k8s && $(CLUSTER_GO) -ldflags "$(K8S_LDFLAGS)" tool
	touch $@

$(CLUSTER_BIN)/traefik: $(CLUSTER_BIN)/.version-traefik-$(TRAEFIK_VERSION) cluster/traefik/go.mod cluster/traefik/go.sum
	@$(NEED_GO)
	cd cluster/traefik && $(CLUSTER_GO) -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$(TRAEFIK_VERSION)" tool
	touch $@

$(CLUSTER_BIN)/coredns: $(CLUSTER_BIN)/.version-coredns-$(COREDNS_VERSION)
	@$(NEED_GO)
	$(CLUSTER_GO) -ldflags "-s -w" github.com/coredns/coredns@$(COREDNS_VERSION)
	touch $@

$(CLUSTER_BIN)/local-path-provisioner: $(CLUSTER_BIN)/.version-local-path-$(LOCAL_PATH_VERSION)
	@$(NEED_GO)
	$(CLUSTER_GO) -ldflags "-s -w" github.com/rancher/local-path-provisioner@$(LOCAL_PATH_VERSION)
	touch $@

$(CLUSTER_BIN)/minio: $(CLUSTER_BIN)/.version-minio-$(MINIO_VERSION)
	@$(NEED_GO)
	$(CLUSTER_GO) -ldflags "-s -w" github.com/minio/minio@$(MINIO_VERSION)
	touch $@

$(CLUSTER_BIN)/mc: $(CLUSTER_BIN)/.version-mc-$(MC_VERSION)
	@$(NEED_GO)
	$(CLUSTER_GO) -ldflags "-s -w" github.com/minio/mc@$(MC_VERSION)
	touch $@

.PHONY: cluster-tools cluster-deps cluster cluster-down
cluster-deps: ## Install the Debian packages a node needs (etcd, containerd, CNI plugins, conntrack)
ifneq ($(CLUSTER_MISSING),)
	@if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: run 'sudo apt-get install $(CLUSTER_MISSING)'"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CLUSTER_MISSING)
endif

cluster-tools: $(CLUSTER_BIN)/kubelet $(CLUSTER_BIN)/traefik $(CLUSTER_BIN)/coredns $(CLUSTER_BIN)/local-path-provisioner $(CLUSTER_BIN)/minio $(CLUSTER_BIN)/mc ## Build the pinned Kubernetes, ingress, DNS, storage and MinIO binaries into .tools/cluster/bin

# `make cluster` leaves the cluster (and a Docker engine it started) running; `make cluster-down`
# stops both. KUBECONFIG=.tools/cluster/kubeconfig; the ingress answers on http://127.0.0.1/.
cluster: cluster-deps cluster-tools k8s-tools ## Start a single-node Kubernetes here with the project's images loaded (needs root)
	docker/engine.sh start
	$(MAKE) --no-print-directory images
	cluster/cluster.sh up

cluster-down: ## Stop the cluster of make cluster (and the Docker engine it started)
	cluster/cluster.sh down
	docker/engine.sh stop

clean: ## Remove local state (.predmaint/) and caches
	rm -rf .predmaint .pytest_cache .ruff_cache .ci/junit.xml

distclean: clean ## Also remove .venv and .tools
	rm -rf $(VENV) .tools
