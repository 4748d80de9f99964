# Two entry points, both safe to run on a fresh machine:
#   make repl   install, then ask questions over the bundled corpus (model + index built on first run)
#   make test   install (with test tools and the Telegram emulator), then run every test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
EMULATOR := tests/telegram_emulator

.PHONY: install install-dev emulator repl test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned to 2.13.0 in pyproject.toml so pip takes the local CPU wheel.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(EMULATOR)/node_modules/.installed: $(EMULATOR)/package-lock.json
	npm ci --prefix $(EMULATOR) --no-audit --no-fund
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
emulator: $(EMULATOR)/node_modules/.installed

repl: install
	$(BIN)/qa-bot repl

test: install-dev emulator
	$(BIN)/python -m pytest

test-fast: install-dev
	$(BIN)/python -m pytest -m "not slow and not e2e"

lint: install-dev
	$(BIN)/ruff check qa_bot tests bench

bench: install-dev
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(EMULATOR)/node_modules embeddings/snapshots embeddings/CURRENT
