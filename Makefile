# Each target creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test bench lint clean

$(BIN)/agent-cli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

## run: a first query on embedded defaults (the agent's tables, in-process)
run: $(BIN)/agent-cli
	$(BIN)/agent-cli query "SELECT pid, name, cmdline FROM processes ORDER BY pid LIMIT 10"

## test: the whole test suite (kernel audit tests run serially, as root)
test: $(BIN)/agent-cli
	$(BIN)/python -m pytest -q

## bench: the benchmarks of bench/ (results go to bench/RESULTS.md by hand)
bench: $(BIN)/agent-cli
	$(BIN)/python bench/bench_tables.py

clean:
	rm -rf $(VENV) .pytest_cache
