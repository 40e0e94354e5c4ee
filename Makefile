# CaseConsultant: `make demo` runs the service on this machine; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench bench-long lint migration clean

$(BIN)/caseconsultant: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/caseconsultant
	$(BIN)/caseconsultant demo

test: $(BIN)/caseconsultant
	$(BIN)/ruff check .
	$(BIN)/mypy consultant workers
	$(BIN)/pytest -ra $(PYTEST_ARGS)

bench: $(BIN)/caseconsultant
	$(BIN)/python -m bench

# Sustained load: 60 s of arrivals per latency rate and per capacity step (about 20 minutes more).
bench-long: $(BIN)/caseconsultant
	$(BIN)/python -m bench --long

lint: $(BIN)/caseconsultant
	$(BIN)/ruff check .
	$(BIN)/mypy consultant workers

migration: $(BIN)/caseconsultant
	$(BIN)/python scripts/regen_migration.py

clean:
	rm -rf $(VENV) var .pytest_cache
