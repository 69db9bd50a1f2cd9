# botfilter — every target creates/updates .venv first, so a fresh clone needs nothing else.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := botfilter core contract simulation features training scoring serving jobs labelling monitoring console
export PYTHONHASHSEED := 0

.DEFAULT_GOAL := help
.PHONY: help venv demo test unit integration lint format check-format bench vendor clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q -p $(BIN)/python -e '.[dev]'
	@# uv installs no bytecode, so without this every command compiled mlflow, sklearn and
	@# pandas from source at start-up wherever .pyc files are not written (read-only installs,
	@# PYTHONDONTWRITEBYTECODE): 35% of a 1M-event `botfilter score`. Some packages ship files
	@# that do not compile (templates, Python 2 tests), hence `|| true`.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	@# The project's own packages too, as `pip install .` would: an editable install has none,
	@# so where .pyc files are not written every command compiled ours again (0.18 s of
	@# `botfilter metrics show`). A source edited later is compiled in memory, never run stale.
	$(BIN)/python -m compileall -q -j 0 $(PACKAGES) > /dev/null
	touch $(STAMP)

venv: $(STAMP) ## create or update .venv with the project and dev tools

demo: $(STAMP) ## run the whole story end to end on a simulated world
	$(BIN)/botfilter demo

lint: $(STAMP) ## ruff check + ruff format --check + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: $(STAMP) ## fast unit tests only
	$(BIN)/pytest -m "not integration" -q $(XDIST)

integration: $(STAMP) ## integration tests (MLflow, BentoML, PostgreSQL, Redis, Spark)
	$(BIN)/pytest -m integration -q $(XDIST)

# Two processes: much of the suite waits on servers, JVMs and subprocesses. A module's tests stay
# on one process (--dist loadfile), so its module-scoped worlds and models are built once, and
# modules go out in collection order (tests/conftest.py puts the longest first; xdist's own order,
# most tests first, left the one-test Spark cluster module to start last).
XDIST := -n 2 --dist loadfile --no-loadscope-reorder

test: lint ## ruff plus the whole test suite on two processes (what CI runs)
	$(BIN)/pytest -q $(XDIST)

bench: $(STAMP) ## run the benchmarks in bench/ (prints events/s, latency, peak memory)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

vendor: $(STAMP) ## rebuild the vendored enrichment data from ../shared/data (SOURCE=dir)
	$(BIN)/botfilter vendor --source $${SOURCE:-../shared/data}

clean: ## remove the venv and generated state
	rm -rf $(VENV) .botfilter .pytest_cache .ruff_cache
