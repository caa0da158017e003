# Set-up and the two README commands. Everything the project needs is installed from its own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

# torch/torchvision pinned through constraints.txt (they install from the local wheel cache on our machines)
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/medsearch demo

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ""

lint: setup
	$(BIN)/ruff check engine indexers kg ui tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .medsearch
