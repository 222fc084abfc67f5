# The two commands of the README: `make run` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.aos-installed
NODE_STAMP := node_modules/.aos-installed

.PHONY: setup run test schemas bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): $(BIN)/python pyproject.toml requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

run: setup
	$(BIN)/aos validate agent_configs mcp_configs
	$(BIN)/aos run --demo

test: setup
	$(BIN)/python -m pytest

schemas: setup
	$(BIN)/aos schema

clean:
	rm -rf $(VENV) node_modules .pytest_cache
