# The two commands of the README: `make run` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.aos-installed
ML_STAMP   := $(VENV)/.aos-ml-installed
NODE_STAMP := node_modules/.aos-installed
BENCH_STAMP := $(VENV)/.aos-bench-installed

.PHONY: setup run test schemas bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): $(BIN)/python pyproject.toml requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The ML extra (LoRA training, Azure ML jobs) only for the tests: `make run` does not need it.
# torch goes first, alone, at the ml extra's pin: an unpinned torch (or one resolved with the other
# packages) pulls GBs of CUDA packages. TORCH_PIP_ARGS (e.g. --index-url https://download.pytorch.org/whl/cpu)
# picks the CPU wheel where the default index serves the CUDA one.
$(ML_STAMP): $(PY_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_ARGS) "$$(grep -m1 -o 'torch==[0-9.]*' pyproject.toml)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ml]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

run: setup
	$(BIN)/aos validate agent_configs mcp_configs workflow_configs
	$(BIN)/aos run --demo

test: setup $(ML_STAMP)
	$(BIN)/python -m pytest

# The benchmarks side by side with LangGraph and AutoGen Core (docs/performance.md): the bench extra
# holds the alternatives. Quick mode (under five minutes) unless BENCH_ARGS says otherwise, e.g.
# `make bench BENCH_ARGS="--full"` or `BENCH_ARGS="--only engine,langgraph --repeat 5"`.
$(BENCH_STAMP): $(PY_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: setup $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

schemas: setup
	$(BIN)/aos schema

clean:
	rm -rf $(VENV) node_modules .pytest_cache
