# kexue — `make demo` (five minutes), `make test`, `make reproduce` (the whole quick suite),
# `make docs` (the documentation site, with the API reference from the docstrings, into site/).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= reports/quick
# Research-use data sets are never in the repository: the library reads them from
# KEXUE_DATA. Pass a copy in with `make ... KEXUE_DATA=/path`; a `../shared/data` beside
# the checkout is used when present.
RESEARCH_DATA := $(or $(KEXUE_DATA),$(wildcard $(abspath ..)/shared/data))
# The embedded model is read from the installed wheel; nothing is fetched from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo reproduce test test-fresh test-data bench lint readme wheel docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned to the CPU wheel on local disk; a bare `torch` pulls a CUDA build.
$(VENV)/.torch: | $(BIN)/python
	$(PIP) install -q torch==2.13.0
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[pretrained,hf,zh]'
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[pretrained,hf,zh,bench,dev]'
	touch $@ $(VENV)/.demo

# Five quick experiments on the bundled data (kexue demo), with an HTML report.
demo: $(VENV)/.demo
	KEXUE_DATA=$(RESEARCH_DATA) $(BIN)/kexue demo --out reports/demo

# Every experiment at quick scale (see the README for the measured time).
reproduce: $(VENV)/.demo
	KEXUE_DATA=$(RESEARCH_DATA) $(BIN)/kexue reproduce --scale quick --out $(OUT)

# The suite twice: as on a fresh machine (research-use data hidden, empty user cache), then
# the tests that need the research-use data or are slow, when a copy of the data is at hand.
test: test-fresh test-data

test-fresh: $(VENV)/.dev
	env -u KEXUE_DATA KEXUE_CACHE=$$(mktemp -d) \
		$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

test-data: $(VENV)/.dev
ifneq ($(RESEARCH_DATA),)
	KEXUE_DATA=$(RESEARCH_DATA) KEXUE_CACHE=$$(mktemp -d) \
		$(BIN)/python -m pytest -q -m "data or slow" -p no:cacheprovider
else
	@echo "test-data: no research-use data (set KEXUE_DATA); the data tests were skipped"
endif

$(VENV)/.docs: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[docs]'
	touch $@

# The site from docs/ and the docstrings, strict (a broken link or reference fails it).
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks

# README's technique table, with verdicts from the committed evidence in docs/evidence/
readme: $(VENV)/.demo
	$(BIN)/kexue readme $(foreach d,$(sort $(wildcard docs/evidence/*/results.json)),--report $(dir $(d)))

wheel: $(VENV)/.torch
	$(PIP) wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) reports dist site .pytest_cache
