# simtrain: `make demo` runs a real training job end to end; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Two installs, each with its stamp: what running needs (demo, run), and that plus the dev tools
# (tests, lint, docs). `make setup` is the dev install.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PROTO := proto/simtrain/data/v1/data_service.proto

.PHONY: setup setup-run demo run test lint docs proto bench clean
.PHONY: up down image-smoke

setup: $(DEV_STAMP)

setup-run: $(RUN_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(DEV_STAMP)

demo: setup-run  ## services + a real gpt-nano training job over REST + the report, then stop
	$(BIN)/simtrain demo

run: setup-run  ## the local stack until Ctrl-C
	$(BIN)/simtrain up

test: setup docs
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: setup  ## the documentation site into site/ (strict: a broken link or a missing page fails)
	$(BIN)/mkdocs build --quiet

proto: setup  ## regenerate the committed gRPC stubs from proto/
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

bench: setup
	$(BIN)/python bench/stream_batches.py
	$(BIN)/python bench/data_stream.py
	$(BIN)/python bench/data_prepare.py
	$(BIN)/python bench/retrieval_index.py
	$(BIN)/python bench/gateway_latency.py
	$(BIN)/python bench/gateway_claim.py
	$(BIN)/python bench/data_memory.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/cpu_attention.py
	$(BIN)/python bench/train_data_wait.py
	$(BIN)/python bench/experiment_schedule.py

# Containers (deploy/): the GPU host stack; CPU=1 adds the override for hosts without a GPU,
# TRAINERS=N runs N trainer containers.
COMPOSE ?= docker compose
COMPOSE_FILES := -f deploy/docker-compose.yml $(if $(CPU),-f deploy/docker-compose.cpu.yml)
TRAINERS ?= 1

up:  ## build the images and start redis, data-service, trainer(s), gateway on :8000
	$(COMPOSE) $(COMPOSE_FILES) up --build --detach --wait --scale trainer=$(TRAINERS)

down:  ## stop and remove the containers (volumes are kept; add ARGS=--volumes to drop them)
	$(COMPOSE) $(COMPOSE_FILES) down $(ARGS)

image-smoke:  ## optional, slow, needs root: podman-build the images on a debootstrap base, run them
	bash deploy/image-smoke.sh

clean:
	rm -rf var .pytest_cache site
