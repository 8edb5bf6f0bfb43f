# The README's two commands are `make demo` and `make test`; everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install install-dev demo serve test system-deps test-fast lint format typecheck bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(STAMP)

## demo: install, migrate, load a demo account with realistic calls, print a token and curl lines, serve on :8000
demo: install
	$(BIN)/pbx-cdr demo --host 127.0.0.1 --port 8000

serve: install
	$(BIN)/pbx-cdr serve

## test: install dev dependencies and run the whole suite (starts its own PostgreSQL and S3 servers)
test: install-dev
	bash scripts/ensure-system-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: install-dev
	$(BIN)/python -m pytest -q -x -m "not postgres and not s3 and not e2e"

lint: install-dev
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install-dev
	$(BIN)/python -m bench.run --calls 10000000

bench-quick: install-dev
	$(BIN)/python -m bench.run --calls 100000 --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
