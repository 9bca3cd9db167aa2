# Set-up is part of every target: a fresh machine needs only python3.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps norse==1.1.0  # its torchvision requirement would pull a CUDA torch
	touch $@

.PHONY: run test bench-deps
run: $(VENV)/.installed
	$(VENV)/bin/neurosim run

test: $(VENV)/.installed
	$(PY) -m pytest -q

# --no-deps: spikingjelly's torchvision requirement would replace the CPU torch with a CUDA build.
bench-deps: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps spikingjelly==0.0.0.0.14
