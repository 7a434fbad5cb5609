# The two commands of the README: `make run` and `make test`. Each builds .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./var

.PHONY: run test bench lint install dev clean axe

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

run: install
	$(BIN)/zorgbrug demo --data-dir $(DATA_DIR)
	$(BIN)/zorgbrug serve --data-dir $(DATA_DIR)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# axe-core for the browser tests' accessibility checks (tests/ui/), from the npm registry; the
# tests skip those checks, saying why, when it could not be installed.
AXE_JS := .cache/axe/node_modules/axe-core/axe.min.js

axe: $(AXE_JS)

$(AXE_JS):
	@command -v npm >/dev/null 2>&1 || { \
	  echo "axe: npm not found; the accessibility checks of tests/ui will be skipped"; exit 0; }; \
	npm install --silent --no-save --no-audit --no-fund --prefix .cache/axe axe-core@4 \
	  || echo "axe: could not install axe-core; the accessibility checks of tests/ui will be skipped"

test: lint axe
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

bench: dev
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "bench: wrk not found, installing it with apt-get"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
	    || { $$SUDO apt-get update -qq >/dev/null 2>&1 \
	         && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1; }; } \
	  || echo "bench: could not install wrk; bench/run.py falls back to a Python load generator"; }
	@$(BIN)/python -c "import aiosqlite, asyncpg, greenlet, psycopg" 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet aiosqlite asyncpg greenlet 'psycopg[binary]'  # floor drivers
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_auth.py
	$(BIN)/python bench/bench_exchange.py
	$(BIN)/python bench/bench_consent.py
	$(BIN)/python bench/bench_consent_search.py
	$(BIN)/python bench/bench_adapters.py
	$(BIN)/python bench/bench_audit.py

clean:
	rm -rf $(VENV) .pytest_cache
