# notebook-pipelines — every target sets up what it needs, and no more: a .venv, the Python
# packages of its extras, Graphviz's dot; the browser only for the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet

.PHONY: setup dot chromium demo test test-fast typecheck lint format docs lab bench notebooks clean

# One stamp per set of extras: `make demo` installs the package alone, `make test` the test tools.
EXTRAS_package :=
EXTRAS_tests   := test,lab,dask,harness,history
EXTRAS_bench   := bench,dask
$(VENV)/.stamp-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.$(if $(filter package,$*),,[$(or $(EXTRAS_$*),$*)])'
	touch $@

## make setup: everything the tests need (the packages, dot, Debian's chromium)
setup: $(VENV)/.stamp-tests dot chromium

dot:
	@bash scripts/ensure-dot

## chromium: Debian's chromium for the browser tests (tests/browser; Playwright never downloads one)
chromium:
	@bash scripts/ensure-chromium

## make demo: build the example pipeline, draw it, run it, draw the run, print the trace
demo: $(VENV)/.stamp-package dot
	$(PY) examples/demo.py

## make test: lint, format check, unit tests, doctests, the README's examples, the notebooks (nbval),
## the docs site, the browser tests
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

## make test-fast: the inner loop: lint, unit tests and doctests without the browser, Binder,
## real-kernel and slow tests, nor the notebooks (`make test` runs everything)
test-fast: $(VENV)/.stamp-tests dot
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -m "not browser and not binder and not kernel and not slow" tests notebook_pipelines

lint: $(VENV)/.stamp-tests
	$(VENV)/bin/ruff check .

format: $(VENV)/.stamp-tests
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## make docs: the documentation website in docs/_build/html (Sphinx + MyST-NB; warnings are errors)
docs: $(VENV)/.stamp-docs dot
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

## make lab: JupyterLab on notebooks/
lab: $(VENV)/.stamp-lab dot
	$(VENV)/bin/jupyter lab notebooks/

## make notebooks: re-execute every notebook in place, storing fresh outputs (then review the diff)
notebooks: setup
	for nb in notebooks/*.ipynb; do \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False \
	    --ClearMetadataPreprocessor.enabled=True --ClearMetadataPreprocessor.preserve_nb_metadata_mask=kernelspec \
	    --ClearMetadataPreprocessor.preserve_nb_metadata_mask=language_info \
	    --ClearMetadataPreprocessor.preserve_cell_metadata_mask=tags "$$nb" || exit 1; \
	done

## make bench: the side-by-side measurements in benchmarks/ (not part of the tests)
bench: $(VENV)/.stamp-bench dot
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis docs/_build dist build

## make typecheck: mypy, strict on the core (definition/ and engine/; settings in pyproject.toml)
typecheck: $(VENV)/.stamp-tests
	$(VENV)/bin/mypy
