# CaseConsultant: `make demo` runs the service on this machine; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench bench-long lint migration clean fuzz chaos

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

# The long fuzz mode (the normal suite runs 120 examples): mutated corpus mails, counts printed.
FUZZ_EXAMPLES ?= 10000
fuzz: $(BIN)/caseconsultant
	CC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -s -q -p no:cacheprovider --timeout=0 tests/fuzz

# The long chaos mode (the normal suite runs 10 + 10 mails): 200 mails in over IMAP and 200 over
# SMTP while the poller, worker, sender and Redis are SIGKILLed at random; counts printed.
CHAOS_MAILS ?= 200
CHAOS_SECONDS ?= 120
chaos: $(BIN)/caseconsultant
	CC_CHAOS_MAILS=$(CHAOS_MAILS) CC_CHAOS_SECONDS=$(CHAOS_SECONDS) $(BIN)/pytest -s -q \
		-p no:cacheprovider --timeout=0 tests/chaos

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
