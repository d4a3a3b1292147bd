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

.PHONY: help install demo test lint format bench lock clean distclean system-deps

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

test: lint system-deps ## Run the whole test suite (ruff, then pytest)
	$(BIN)/pytest $(PYTEST_ARGS)

# Debian packages used for real: the Mosquitto MQTT broker (ingestion tests), Chromium and its
# driver (the web page and report tests), wrk (the serving benchmark).
DEBIAN_PACKAGES := mosquitto chromium chromium-driver wrk
MISSING := $(strip $(if $(shell command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null),,mosquitto) \
	$(if $(shell command -v chromium),,chromium) $(if $(shell command -v chromedriver),,chromium-driver) \
	$(if $(shell command -v wrk),,wrk))
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

bench: install system-deps ## Run the benchmarks (BENCH="serving" for one) and rewrite docs/BENCHMARKS.md
	$(BIN)/python -m benchmarks.run $(BENCH)

lock: $(UV) ## Re-resolve uv.lock after changing dependencies in pyproject.toml
	$(UV) lock --python $(PYTHON)

clean: ## Remove local state (.predmaint/) and caches
	rm -rf .predmaint .pytest_cache .ruff_cache .ci/junit.xml

distclean: clean ## Also remove .venv and .tools
	rm -rf $(VENV) .tools
