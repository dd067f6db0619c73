# simtrain: `make demo` runs a real training job end to end; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO := proto/simtrain/data/v1/data_service.proto

.PHONY: setup demo run test lint proto bench clean

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

clean:
	rm -rf var .pytest_cache
