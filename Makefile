# Set-up is part of every target: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: run test bench-deps
run: $(VENV)/.installed
	$(VENV)/bin/neurosim run

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench-deps: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
