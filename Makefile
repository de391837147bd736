# notebook-pipelines — every target sets up what it needs (a .venv, the packages, Graphviz's dot).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup chromium demo test lint format lab bench notebooks clean

setup: $(STAMP) dot chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lab,dask,harness,history]'
	touch $(STAMP)

dot:
	@bash scripts/ensure-dot

## chromium: Debian's chromium for the browser tests (tests/browser; Playwright never downloads one)
chromium:
	@bash scripts/ensure-chromium

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

## make notebooks: re-execute every notebook in place, storing fresh outputs (then review the diff)
notebooks: setup
	for nb in notebooks/*.ipynb; do \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False \
	    --ClearMetadataPreprocessor.enabled=True --ClearMetadataPreprocessor.preserve_nb_metadata_mask=kernelspec \
	    --ClearMetadataPreprocessor.preserve_nb_metadata_mask=language_info \
	    --ClearMetadataPreprocessor.preserve_cell_metadata_mask=tags "$$nb" || exit 1; \
	done

## make bench: the side-by-side measurements in benchmarks/ (not part of the tests)
bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
