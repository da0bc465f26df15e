# Each target creates the virtual environment and installs stressor into it first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/stressor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/stressor
	$(BIN)/stressor run

test: $(BIN)/stressor
	$(BIN)/pytest

lint: $(BIN)/stressor
	$(BIN)/ruff format --check stressor tests benchmarks
	$(BIN)/ruff check stressor tests benchmarks

bench: $(BIN)/stressor
	$(BIN)/python benchmarks/cycle_rate.py

clean:
	rm -rf $(VENV) build *.egg-info
