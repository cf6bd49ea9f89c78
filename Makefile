# ibpilot: the two entry points are `make demo` and `make test`.
# Both create the virtual environment from the lock file on first use.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

# uv must never fetch an interpreter of its own: use the machine's Python.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test setup lint typecheck unit sim clean pg-stop

demo: setup ## the main job: the bot trading on the simulator, with a live status view
	$(BIN)/ibpilot demo

test: setup lint typecheck unit ## everything CI runs

setup: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The ledger's PostgreSQL path is tested against a real server on 127.0.0.1
# (scripts/with-test-pg.sh starts one for the run, installing Debian's postgresql if
# needed, and stops it afterwards; set IBPILOT_TEST_PG_URL to use your own).
unit: setup
	scripts/with-test-pg.sh $(BIN)/pytest

pg-stop: ## stop the test PostgreSQL server
	scripts/pg-test-server.sh stop

sim: setup ## run the simulated gateway on 127.0.0.1:4102
	$(BIN)/ibpilot sim

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
