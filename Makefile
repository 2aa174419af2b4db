# The two commands a newcomer needs:  `make run` (the service; a demo without config)
# and `make test` (the whole test suite). Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint check bench clean translations

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## run: start the service (demo mode on embedded defaults when no config is given)
run: $(VENV)/.installed
	$(PY) app.py

## test: install what the tests need (Chromium when root on Debian) and run them all
test: $(VENV)/.installed
	bash scripts/test-deps.sh
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy, as CI runs them
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## translations: extract marked strings into the catalogs and compile them (commit both)
translations: $(VENV)/.installed
	$(PY) -m release.devtools.catalogs
