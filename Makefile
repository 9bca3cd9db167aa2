# Set-up is part of every target: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps norse==1.1.0  # its torchvision requirement would pull a CUDA torch
	touch $@

.PHONY: run test docs wheel-test bench-deps sweep-deps
run: $(VENV)/.installed
	$(VENV)/bin/neurosim run

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The documentation site, from docs/ and the docstrings, into site/.
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict

# The built wheel installed into a fresh virtual environment outside the source tree.
wheel-test: $(VENV)/.installed
	PY=$(PY) bash .ci/wheel

# --no-deps: spikingjelly's torchvision requirement would replace the CPU torch with a CUDA build.
bench-deps: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps spikingjelly==0.0.0.0.14

# Ray Tune and Optuna, for neurosim sweep (the test extra has them too).
sweep-deps: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,sweep]' torch==2.13.0
