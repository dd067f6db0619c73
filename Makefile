# simtrain: `make demo` runs a real training job end to end; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO := proto/simtrain/data/v1/data_service.proto

.PHONY: setup demo run test lint proto bench clean
.PHONY: up down image-smoke

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup  ## services + a real gpt-nano training job over REST + the report, then stop
	$(BIN)/simtrain demo

run: setup  ## the local stack until Ctrl-C
	$(BIN)/simtrain up

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

proto: setup  ## regenerate the committed gRPC stubs from proto/
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

bench: setup
	$(BIN)/python bench/stream_batches.py
	$(BIN)/python bench/data_stream.py
	$(BIN)/python bench/data_prepare.py
	$(BIN)/python bench/gateway_latency.py
	$(BIN)/python bench/gateway_claim.py
	$(BIN)/python bench/data_memory.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/cpu_attention.py
	$(BIN)/python bench/train_data_wait.py

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
	rm -rf var .pytest_cache
