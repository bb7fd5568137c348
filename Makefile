# Small verbs over one virtual environment. Argument checking lives in the Python CLI.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := $(BIN)/cnnvsmlp
PIPELINE ?= compare
# CONFIG: a preset name or YAML file; unset, the command line's default preset.
CONFIG ?=
# Every value reaches the CLI as one quoted word ('\'' for a quote in it): no shell runs it.
q = '$(subst ','\'',$(1))'
CONFIG_ARG := $(if $(CONFIG),--config $(call q,$(CONFIG)))
# SET: any config field, KEY=VALUE words: make run SET="train.steps_per_execution=32 seed=2"
SET ?=
# The common fields as variables: make run EPOCHS=1 REPEATS=3 LIMIT=3000 VARIANTS=cnn,mlp SEED=1
# DATASET=fashion-mnist, tfds:<name> or folder:<path>
SETTINGS := SEED:seed BATCH:batch_size EPOCHS:epochs REPEATS:repeats LIMIT:limit \
  VARIANTS:variants OPTIMIZER:optimizer LEARNING_RATE:learning_rate SOURCE:source \
  IDX_DIR:idx_dir RESUME_URI:resume_uri DATASET:dataset
setting_var = $(word 1,$(subst :, ,$(1)))
setting_key = $(word 2,$(subst :, ,$(1)))
OVERRIDES := $(foreach w,$(SET),$(call q,$(w))) $(foreach s,$(SETTINGS),\
  $(if $($(call setting_var,$(s))),$(call q,$(call setting_key,$(s))=$($(call setting_var,$(s))))))
# RUNNER=docker runs every task in the image the pipeline names for it (make images first).
RUNNER ?= subprocess
EXPERIMENT ?=
EXPERIMENT_ARG := $(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT)))
# make run: RESUME=<run id> continues an interrupted run; CACHE=no trains everything again;
# VERBOSE=yes streams every task's output (yes/no, 1/0, true/false, on/off: the CLI checks).
RUN_ARGS := $(if $(RESUME),--resume $(call q,$(RESUME))) \
  $(if $(CACHE),$(call q,--cache=$(CACHE))) $(if $(VERBOSE),$(call q,--verbose=$(VERBOSE)))
UV_VERSION := 0.13.9

# A variable on the command line that none of these names is a typo, not a setting to drop.
KNOWN_VARS := PYTHON PIPELINE CONFIG SET RUNNER EXPERIMENT CRON PUSH RESUME CACHE VERBOSE DEVICE \
  BENCH_ARGS $(foreach s,$(SETTINGS),$(call setting_var,$(s)))
UNKNOWN_VARS := $(filter-out $(KNOWN_VARS),$(foreach v,$(.VARIABLES),\
  $(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(strip $(UNKNOWN_VARS)),)
$(error $(shell $(PYTHON) -c 'import difflib, sys; known = sys.argv[1].split(); \
  print("; ".join(f"unknown variable {v}" + "".join(f", did you mean {m}?" for m in \
  difflib.get_close_matches(v.upper(), known, 1, 0.6)) for v in sys.argv[2:]) \
  + ": make help lists the variables")' '$(KNOWN_VARS)' $(foreach v,$(UNKNOWN_VARS),$(call q,$(v)))))
endif

.PHONY: help apply lock setup data models run runs test test-slow test-images lint format compile submit schedule unschedule images push bench schema-doc clean

help: ## List the verbs, and the variables that change what they do.
	@echo "make <verb> [VARIABLE=value ...]"
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: $(foreach s,$(SETTINGS),$(call setting_var,$(s))) (config fields);"
	@echo "  SET='key=value ...' (any field), CONFIG, PIPELINE, RUNNER, RESUME, CACHE=no, VERBOSE=yes"

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

run: setup ## Run a pipeline locally: progress on screen, every log in runs/<id>/logs.
	@$(CLI) run --pipeline $(call q,$(PIPELINE)) $(CONFIG_ARG) --runner $(call q,$(RUNNER)) \
	  $(RUN_ARGS) $(OVERRIDES)

runs: $(BIN)/.installed ## List the local runs: status, date, config, best accuracy.
	@$(CLI) runs

# Tests run in parallel, a test file per worker (its module fixtures built once), up to 4 at once.
XDIST := -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

test: setup ## Run the unit, component and compile tiers and one end-to-end run (minutes).
	$(BIN)/pytest $(XDIST) -m "not images and not slow and not bench"

test-slow: setup ## Run the slow tier: resumes, reproducibility, fault runs, the GPU check's dry run.
	$(BIN)/pytest $(XDIST) -m "slow and not bench"

test-images: setup ## Build the images (cached) and run the pipeline's dry run inside them.
	$(BIN)/python -m tools.images
	$(BIN)/pytest -m images tests/test_images_run.py

# checkov and its ~100 dependencies live apart from the project's lock, in .venv-tools.
TOOLS := .venv-tools
$(TOOLS)/.installed: requirements-tools.lock $(BIN)/.installed
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@$(BIN)/uv pip install -q --python $(TOOLS)/bin/python --require-hashes -r requirements-tools.lock
	@touch $@

lint: $(BIN)/.installed $(TOOLS)/.installed ## ruff, hadolint, manifest validation and checkov (offline).
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tools.infra

apply: $(BIN)/.installed ## Apply manifests/ (multi-user: the Profile, a wait, the rest).
	$(BIN)/python -m tools.infra apply

format: $(BIN)/.installed ## Format and fix the code with ruff.
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schema-doc: $(BIN)/.installed ## Write docs/comparison-schema.md's tables from the pydantic models.
	$(BIN)/python -m tools.schema_doc

compile: $(BIN)/.installed ## Compile a pipeline to build/<name>.yaml.
	$(CLI) compile --pipeline $(call q,$(PIPELINE))

# submit and schedule first check the registry and the service account;
# CNNVSMLP_SKIP_CHECKS=images,service-account (or all) leaves checks out.
submit: $(BIN)/.installed ## Compile, check, upload and start a run on KFP_HOST.
	$(CLI) submit --pipeline $(call q,$(PIPELINE)) $(CONFIG_ARG) $(EXPERIMENT_ARG) $(OVERRIDES)

schedule: $(BIN)/.installed ## Create a recurring run on KFP_HOST (6-field cron).
	$(CLI) schedule --pipeline $(call q,$(PIPELINE)) $(CONFIG_ARG) --cron $(call q,$(CRON)) $(EXPERIMENT_ARG) $(OVERRIDES)

unschedule: $(BIN)/.installed ## Delete the recurring run of a pipeline.
	$(CLI) unschedule --pipeline $(call q,$(PIPELINE)) $(CONFIG_ARG) $(EXPERIMENT_ARG)

images: $(BIN)/.installed ## Build both images into the local Docker engine (content tags).
	$(BIN)/python -m tools.images $(if $(PUSH),--push)

push: $(BIN)/.installed ## Build both images and push them to the registry.
	$(BIN)/python -m tools.images --push

bench: setup ## Slow measurements (interval coverage, data reader speed, training throughput).
	$(BIN)/pytest -m bench -s -q -p no:randomly tests/test_pairwise.py
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

# DEVICE=gpu (default) gathers what the lent GPU machine needs and prints its command;
# DEVICE=cpu runs the same check here on a slice (LIMIT images of each split).
DEVICE ?= gpu
gpu-check: $(BIN)/.installed ## Prepare the GPU check (jax) for a lent machine; DEVICE=cpu dry-runs it here.
	$(BIN)/python -m tools.gpu_check $(if $(filter gpu,$(DEVICE)),gather,\
	  run --device $(DEVICE) $(if $(LIMIT),--limit $(LIMIT)) $(if $(EPOCHS),--epochs $(EPOCHS)))

clean: ## Remove build outputs and tool caches (never runs/ or data/).
	rm -rf build .pytest_cache .ruff_cache
