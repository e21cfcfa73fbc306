# Two commands on a fresh clone:
#   make demo   -> creates .venv, installs pinned deps, runs the built-in demo
#   make test   -> same set-up, then ruff, mypy and pytest
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest lab lab-docs clean

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gradientflow diagnose

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --durations=15

test: lint typecheck pytest

lab: $(STAMP)
	$(BIN)/gradientflow lab --quick

# regenerate docs/lab.md's and the README's lab numbers (quick lab, 3 seeds)
lab-docs: $(STAMP)
	$(BIN)/gradientflow lab --quick --seeds 3 --out lab-results/quick --no-progress
	$(BIN)/python -m gradientflow.lab.docs --quick lab-results/quick/results.json

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
