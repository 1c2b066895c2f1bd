# Hookline: `make run` to try it, `make test` to check it. Everything runs from .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := services shared tests $(wildcard bench) client $(wildcard chaos)
BENCH_ARGS ?=
CHAOS_ARGS ?=
PYTEST_ARGS ?=
# A fixed token only for `make run` on a laptop, so the tour's curl commands work as printed.
DEV_TOKEN := dev-token-change-me
API_PORT := $(or $(HOOKLINE_API_PORT),8000)

.PHONY: help install promtool services migrate run lint typecheck test bench chaos clean

help:
	@echo "make run        install, start RabbitMQ and Postgres, migrate, run all services"
	@echo "make test       lint, typecheck, then unit, integration and end-to-end tests"
	@echo "make bench      the benchmark (BENCH_ARGS='--events 5000 ...')"
	@echo "make chaos      the fault suite on private brokers and Postgres (CHAOS_ARGS='--faults a,b --out f.json')"
	@echo "make install | services | migrate | lint | typecheck | clean"

# Debian's Chromium for the browser tests: apt-get installed when missing (as root), else a
# clear error; Playwright never downloads a browser of its own.
install: $(STAMP)
	@scripts/ensure-chromium.sh

# The stamp makes `install` a no-op until pyproject.toml changes.
$(STAMP): pyproject.toml client/pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "python3-venv is missing: installing it with apt-get"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	    else \
	      echo "error: $(PYTHON) cannot create a virtualenv; install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(MAKE) --no-print-directory promtool
	$(BIN)/python -m pip install --quiet -e './client[outbox]'
	@scripts/ensure-wrk.sh || echo "(make install goes on: only the bench's http scenario needs wrk)"
	@touch $(STAMP)

# promtool (Debian's `prometheus` package) checks and unit-tests deploy/prometheus/alerts.yaml.
promtool:
	@if ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "promtool is missing: installing Debian's prometheus package with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else \
	    echo "error: promtool is missing; install it (Debian/Ubuntu: sudo apt-get install prometheus)" >&2; \
	    exit 1; \
	  fi; \
	fi

services:
	@scripts/ensure-services.sh

migrate: install services
	$(BIN)/hookline migrate

run: install services migrate
	@token="$${HOOKLINE_API_TOKENS:-$(DEV_TOKEN)}"; token="$${token%%,*}"; \
	if [ -z "$${HOOKLINE_API_TOKENS:-}" ]; then echo "HOOKLINE_API_TOKENS is not set: using the dev token $(DEV_TOKEN)"; fi; \
	scripts/tour.sh "$$token" "$(API_PORT)"; \
	HOOKLINE_API_TOKENS="$${HOOKLINE_API_TOKENS:-$(DEV_TOKEN)}" \
	HOOKLINE_LOG_FORMAT=console HOOKLINE_ALLOW_PRIVATE_TARGETS=true \
	exec $(BIN)/hookline all

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: install
	$(BIN)/mypy

# pytest prints its own summary line; its exit code is make's.
test: install services lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/unit tests/integration tests/e2e client/tests

# wrk is needed only by the http scenario: a run that leaves it out goes on without it.
bench: install services
	@case " $(BENCH_ARGS) " in *--scenarios*) case "$(BENCH_ARGS)" in *http*) scripts/ensure-wrk.sh;; esac;; \
	  *) scripts/ensure-wrk.sh;; esac
	$(BIN)/python -m bench $(BENCH_ARGS)

# Starts its own RabbitMQ nodes and Postgres (never touches the machine's): needs the
# rabbitmq-server and postgresql-15 packages installed, and root (or sudo) to run them.
chaos: install services
	$(BIN)/python -m chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
