# Portway: `make run` starts a hub, `make test` runs everything CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
HUB_ARGS ?=

.PHONY: run test lint typecheck pytest fmt bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("Portway needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install when the dependency files change.
$(VENV)/.runtime: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PIP) install -c constraints.txt -e '.[dev]'
	@touch $@

run: $(VENV)/.runtime
	$(BIN)/portway hub $(HUB_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Benchmarks against direct, socat, ssh, stunnel and nginx (bench/README.md); e.g.
# BENCH_ARGS=--quick. The dev extras carry matplotlib for the charts.
BENCH_ARGS ?=
bench: $(VENV)/.dev
	bench/install-tools.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

fmt: $(VENV)/.dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
