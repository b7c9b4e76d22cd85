# Two commands do everything on a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install install-run lock lock-keep lock-check system-deps run test cover lint fmt bench docs clean distclean

help:
	@echo "make run     install, migrate and serve (SQLite, no Redis, local Stripe stand-in) at http://$(HOST):$(PORT)"
	@echo "make test    install everything the tests need, then lint and run every test"
	@echo "make cover   the unit tests alone, with line coverage (the money path must stay >= 85%)"
	@echo "make lock    re-resolve uv.lock to the newest allowed versions (then make test)"
	@echo "make lint    ruff check src devstripe tests bench; mypy --strict src and devstripe"
	@echo "make fmt     ruff format and ruff check --fix on src and tests"
	@echo "make bench   run the benchmarks (bench/run_all.py)"
	@echo "make docs    retake the screenshots in docs/ (headless Chromium)"
	@echo "             (the timer element: clients/web, its tests: node --test clients/web/test/)"
	@echo "make clean   remove caches, build output and private test services (distclean: also .venv)"

# Everything Python comes from uv.lock (hashes included); uv itself from
# scripts/uv-requirements.txt (pinned, hashed). `uv sync --locked` refuses a lock that no longer
# matches pyproject.toml: the check below says so in words and names the target that fixes it.
UV_BOOT := .venv-uv
UV := $(UV_BOOT)/bin/uv
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
UV_SYNC := $(UV) sync --locked

$(UV): scripts/uv-requirements.txt
	$(PYTHON) -m venv $(UV_BOOT)
	$(UV_BOOT)/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
	  -r scripts/uv-requirements.txt
	touch $@

lock-check: $(UV)
	@$(UV) lock --check >/dev/null 2>&1 || { \
	  echo "uv.lock does not match pyproject.toml (or devstripe/pyproject.toml): run 'make lock'," >&2; \
	  echo "then 'make test', and commit both files together." >&2; exit 1; }

# Re-resolves every dependency to the newest version pyproject.toml allows (see README,
# "Upgrading dependencies"). `make lock-keep` only re-resolves what pyproject.toml changed.
lock: $(UV)
	$(UV) lock --upgrade

lock-keep: $(UV)
	$(UV) lock

# Running needs the service and the local Stripe stand-in (devstripe/, a development package of
# its own: editable here, never in the wheel); the tests add their tools on top.
# --inexact: after `make test` the test tools stay; `make run` itself installs none of them.
$(RUN_STAMP): uv.lock pyproject.toml devstripe/pyproject.toml | lock-check
	$(UV_SYNC) --inexact --group devstripe
	touch $@

$(STAMP): uv.lock pyproject.toml devstripe/pyproject.toml | lock-check
	$(UV_SYNC) --group devstripe --group test
	touch $@ $(RUN_STAMP)

install-run: lock-check $(RUN_STAMP)

install: lock-check $(STAMP)

system-deps:
	scripts/system-deps.sh

run: install-run
	$(BIN)/payment-window migrate
	@echo "payment-window: serving at http://$(HOST):$(PORT)/ (Ctrl-C stops)"
	$(BIN)/payment-window serve --host $(HOST) --port $(PORT) --local-stripe

lint: install
	$(BIN)/ruff check src devstripe tests bench
	$(BIN)/mypy --strict src
	$(BIN)/mypy --strict devstripe/src

# One shell for the whole run: test-services.sh may start private servers, and stops
# them when this shell exits. pytest's exit 5 (no test ran) fails the target like any other.
# The browser tests run in a pytest of their own: Playwright's sync API keeps an event loop
# running in the main thread, which the asyncio tests must not find there.
# The unit layer runs first, alone and with coverage (`make cover`); then the rest.
test: install system-deps lint .venv-checkov/bin/checkov .venv-checkov/bin/hadolint cover
	source scripts/test-services.sh && \
	node --test --test-reporter=spec clients/web/test/ $$(compgen -G 'tests/js/*.test.mjs' || true) && \
	$(BIN)/pytest --ignore=tests/browser --ignore=tests/unit && \
	$(BIN)/pytest tests/browser

# Line coverage of the unit tests alone (fakes of the ports, no servers): the report lists each
# module not fully covered; scripts/coverage_gate.py fails when service, transitions, expiry or
# webhooks drop below 85 %.
cover: install .venv-checkov/bin/checkov .venv-checkov/bin/hadolint
	$(BIN)/pytest tests/unit --cov=payment_window --cov-report=term:skip-covered \
	  --cov-report=json:.coverage-unit.json
	$(BIN)/python scripts/coverage_gate.py .coverage-unit.json

fmt: install
	$(BIN)/ruff format src devstripe tests
	$(BIN)/ruff check --fix src devstripe tests

# The benchmarks start their own Redis, Stripe stand-in and uvicorn; PostgreSQL is the tests'
# (or a private one test-services.sh starts); wrk and hey are the load generators.
bench: install system-deps
	scripts/system-deps.sh --bench
	source scripts/test-services.sh && $(BIN)/python bench/run_all.py

# The only writer of the pictures in docs/: a plain test run keeps its screenshots in a tmp path.
docs: install system-deps
	source scripts/test-services.sh && \
	PW_DOCS_DIR=$(CURDIR)/docs $(BIN)/pytest tests/browser -k "screenshot or page_states or embedded_timer"

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .services build dist src/*.egg-info \
	  devstripe/build devstripe/src/*.egg-info .coverage .coverage-unit.json htmlcov
	find src devstripe tests bench -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .venv-checkov $(UV_BOOT)

.venv-checkov/bin/checkov .venv-checkov/bin/hadolint: scripts/checkov.sh uv.lock | lock-check
	scripts/checkov.sh --install
