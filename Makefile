# Shortcuts to the commands the README documents; each creates .venv itself on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint docs bench bench-ranking bench-scale clean

$(BIN)/digest: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint,semantic]'
	touch $@

demo: $(BIN)/digest
	$(BIN)/digest demo

test: $(BIN)/digest
	$(BIN)/python -m pytest -q

# What CI checks before the tests: lint, formatting, types.
lint: $(BIN)/digest
	$(BIN)/ruff check digest tests benchmarks
	$(BIN)/ruff format --check digest tests benchmarks
	$(BIN)/mypy

# docs/cli.md from every command's --help (tests/test_docs.py fails when it is out of date).
docs: $(BIN)/digest
	$(BIN)/python -m digest.cli_reference docs/cli.md

bench: bench-ranking bench-scale

bench-ranking: $(BIN)/digest
	$(BIN)/python benchmarks/ranking.py --data ../shared/eval/papers.jsonl

bench-scale: $(BIN)/digest
	$(BIN)/python benchmarks/scale.py --subscribers 10000 --papers 500

clean:
	rm -rf $(VENV) var build *.egg-info
