# Two commands for a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test test-season bench lint clean

$(BIN)/mascara-actors: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

run: $(BIN)/mascara-actors  ## set up, then run the station demo on the embedded default
	$(BIN)/mascara-actors demo

test: $(BIN)/mascara-actors  ## set up, lint, type-check, check the layers, then run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not season"

test-season: $(BIN)/mascara-actors  ## the transit search on a simulated 60-night season (about 5 minutes)
	$(BIN)/python -m pytest -m season -s tests/mascara_actors/search/test_season.py

bench: $(BIN)/mascara-actors  ## benchmarks, one JSON line per figure
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis .mypy_cache .import_linter_cache
