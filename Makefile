# `make demo` and `make test` are the README's Quickstart; each builds .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[export,video,heic,test,dev]"
	touch $@

.PHONY: demo test lint
demo: $(VENV)/.installed
	$(PY) -m kseg.recipes.cityscapes --demo --out runs/demo

# Two pytest workers share the 2 cores (graph tracing, which dominates many tests, is
# single-threaded); worksteal hands the slow recipe and export tests to whichever is free.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check kseg tests bench
	$(VENV)/bin/ruff format --check kseg tests bench
