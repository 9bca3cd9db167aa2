# Set-up is part of every target: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: run test bench-deps sweep-deps
run: $(VENV)/.installed
	$(VENV)/bin/neurosim run

test: $(VENV)/.installed
	$(PY) -m pytest -q

# --no-deps: spikingjelly's torchvision requirement would replace the CPU torch with a CUDA build.
bench-deps: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps spikingjelly==0.0.0.0.14

# Ray Tune and Optuna, for neurosim sweep and its slow tests (pytest -m slow tests/test_sweep.py).
sweep-deps: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,sweep]' torch==2.13.0
