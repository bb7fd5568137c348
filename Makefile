# Small verbs over one virtual environment. Argument checking lives in the Python CLI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := $(BIN)/cnnvsmlp
PIPELINE ?= compare
# CONFIG: a preset name or YAML file; unset, the command line's default preset.
CONFIG ?=
CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG))
SET ?=
# Common overrides as make variables: make run EPOCHS=1 REPEATS=3 LIMIT=3000 VARIANTS=cnn,mlp
OVERRIDES := $(SET) $(foreach v,EPOCHS REPEATS LIMIT VARIANTS SOURCE IDX_DIR,\
  $(if $($(v)),$(shell echo $(v) | tr A-Z a-z)=$($(v))))
# RUNNER=docker runs every task in the image the pipeline names for it (make images first).
RUNNER ?= subprocess
EXPERIMENT ?=
EXPERIMENT_ARG := $(if $(EXPERIMENT),--experiment $(EXPERIMENT))
UV_VERSION := 0.13.9

.PHONY: lock setup data models run test test-images lint format compile submit schedule unschedule images push bench clean

$(BIN)/.installed: requirements.lock pyproject.toml
	@echo "setup: creating $(VENV) from requirements.lock"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@
	@echo "setup: done"

lock: $(BIN)/.installed ## Re-resolve the locks (dev, CPU image, GPU image) from pyproject.toml.
	$(BIN)/uv pip compile pyproject.toml --extra cpu --extra dev \
	  --python-version 3.11 --generate-hashes -o requirements.lock
	for extra in cpu gpu; do \
	  $(BIN)/uv pip compile pyproject.toml --extra $$extra --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --generate-hashes -c requirements.lock \
	    -o requirements-$$extra.lock; done

setup: $(BIN)/.installed ## Install pinned dependencies into .venv and the offline data (idempotent).
	@$(CLI) ensure-data

data: setup ## Download and normalise the preset's data set into data/.
	$(CLI) prepare $(CONFIG_ARG) $(OVERRIDES)

models: $(BIN)/.installed ## Print every model variant with data set, layers and parameter count.
	@$(CLI) models

run: setup ## Run a pipeline locally with kfp's local runner.
	$(CLI) run --pipeline $(PIPELINE) $(CONFIG_ARG) --runner $(RUNNER) $(OVERRIDES)

test: setup ## Run every test tier (unit, component, compile); the image tier is test-images.
	$(BIN)/pytest -m "not images"

test-images: setup ## Build the images (cached) and run the pipeline's dry run inside them.
	$(CLI) images
	$(BIN)/pytest -m images tests/test_images_run.py

lint: $(BIN)/.installed ## ruff, hadolint and manifest validation.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(CLI) lint-infra

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

compile: $(BIN)/.installed ## Compile a pipeline to build/<name>.yaml.
	$(CLI) compile --pipeline $(PIPELINE)

# submit and schedule first check the registry and the service account;
# CNNVSMLP_SKIP_CHECKS=images,service-account (or all) leaves checks out.
submit: $(BIN)/.installed ## Compile, check, upload and start a run on KFP_HOST.
	$(CLI) submit --pipeline $(PIPELINE) $(CONFIG_ARG) $(EXPERIMENT_ARG) $(OVERRIDES)

schedule: $(BIN)/.installed ## Create a recurring run on KFP_HOST (6-field cron).
	$(CLI) schedule --pipeline $(PIPELINE) $(CONFIG_ARG) --cron '$(CRON)' $(EXPERIMENT_ARG) $(OVERRIDES)

unschedule: $(BIN)/.installed ## Delete the recurring run of a pipeline.
	$(CLI) unschedule --pipeline $(PIPELINE) $(CONFIG_ARG) $(EXPERIMENT_ARG)

images: $(BIN)/.installed ## Build both images into the local Docker engine (content tags).
	$(CLI) images $(if $(PUSH),--push)

push: $(BIN)/.installed ## Build both images and push them to the registry.
	$(CLI) images --push

bench: setup ## Slow measurements (data reader speed, training throughput).
	$(BIN)/python -m cnnvsmlp_pipelines.bench $(BENCH_ARGS)

# DEVICE=gpu (default) gathers what the lent GPU machine needs and prints its command;
# DEVICE=cpu runs the same check here on a slice (LIMIT images of each split).
DEVICE ?= gpu
gpu-check: $(BIN)/.installed ## Prepare the GPU check (jax) for a lent machine; DEVICE=cpu dry-runs it here.
	$(BIN)/python -m cnnvsmlp_pipelines.gpu_check $(if $(filter gpu,$(DEVICE)),gather,\
	  run --device $(DEVICE) $(if $(LIMIT),--limit $(LIMIT)) $(if $(EPOCHS),--epochs $(EPOCHS)))

clean:
	rm -rf build .pytest_cache .ruff_cache
