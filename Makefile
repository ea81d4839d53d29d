# gpupipe: the two commands are `make run` and `make test`; both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install lint fmt typecheck test test-unit test-integration test-e2e test-chaos test-infra up down status demo run bench chaos clean

help:
	@echo "make run     - set up, start the local stack and run the demo (images under out/)"
	@echo "make test    - set up and run every test tier (unit, integration, e2e, infra)"
	@echo "make up/down - start/stop the local stack; make status shows it"
	@echo "make lint    - ruff + mypy;  make bench - benchmarks, CSV under results/"
	@echo "make chaos   - the large fault run (SIGKILLs under load), results/chaos.csv"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, alone: the CPU build on this machine; otherwise pip pulls CUDA wheels.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[functions,worker,dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration tests/contract $(PYTEST_ARGS)

test-e2e: $(STAMP)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-chaos: $(STAMP)
	$(PY) -m pytest tests/chaos $(PYTEST_ARGS)

test-infra: $(STAMP)
	$(PY) -m pytest tests/infra $(PYTEST_ARGS)

# The whole local stack, detached: emulators, functions, a worker, a demo user (.gpupipe/local.env).
up: $(STAMP)
	$(PY) -m emulators up

# Against a running stack: HTTP jobs, a gcloud upload, live progress, images under out/.
demo: $(STAMP)
	$(PY) -m emulators.demo

# Install (first time), start the stack and run the demo; the stack stays up (make down stops it).
run: $(STAMP)
	@$(MAKE) --no-print-directory up
	@$(MAKE) --no-print-directory demo

down:
	@if [ -x $(PY) ]; then $(PY) -m emulators down; else echo "nothing to stop: no $(VENV)"; fi

status: $(STAMP)
	$(PY) -m emulators status

# Benchmarks are not tests: each writes CSV under results/ and prints a table.
bench: $(STAMP)
	$(PY) -m bench.worker --results results

# The large chaos run (1000 jobs, 50 worker SIGKILLs, 5 api SIGKILLs): a row in results/chaos.csv.
chaos: $(STAMP)
	$(PY) -m bench.chaos --results results

clean: down  # stop the stack first: its PIDs live in .gpupipe/
	rm -rf .gpupipe out .mypy_cache .ruff_cache .pytest_cache
