# notebook-pipelines — every target sets up what it needs (a .venv, the packages, Graphviz's dot).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint format lab bench clean

setup: $(STAMP) dot

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lab]'
	touch $(STAMP)

dot:
	@bash scripts/ensure-dot

## make demo: build the example pipeline, draw it, run it, draw the run, print the trace
demo: setup
	$(PY) examples/demo.py

## make test: lint, format check, unit tests, doctests and the notebooks (nbval)
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## make lab: JupyterLab on notebooks/
lab: setup
	$(VENV)/bin/jupyter lab notebooks/

## make bench: the side-by-side measurements in benchmarks/ (not part of the tests)
bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
