# The two commands of the README are `make demo` and `make test`; everything else is a step
# they share. The virtualenv is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint tools stack-up stack-down bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/guardstream demo

lint: setup
	$(BIN)/ruff check guardstream tests
	$(BIN)/ruff format --check guardstream tests
	$(BIN)/mypy

# promtool and prometheus for the alert-rule and end-to-end observability tests.
tools:
	sh scripts/ensure-prometheus.sh

test: lint tools
	$(BIN)/pytest

stack-up: setup
	$(BIN)/guardstream stack up

stack-down: setup
	$(BIN)/guardstream stack down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
