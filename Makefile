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

## run: agentd in the foreground on its embedded default config; state and logs in ./state (Ctrl-C stops it)
run: $(BIN)/agent-cli
	$(BIN)/agent-cli query "SELECT pid, parent, uid, name FROM processes ORDER BY pid LIMIT 5"
	@echo "agentd: results in state/log/results.log; try: $(BIN)/agent-cli --connect state/agentd.sock status"
	$(BIN)/agentd --state-dir state --log-dir state/log

## test: the whole test suite (kernel audit tests run serially, as root)
test: $(BIN)/agent-cli
	$(BIN)/python -m pytest -q

## bench: the benchmarks of bench/ (figures and commands in bench/RESULTS.md; audit needs root)
bench: $(BIN)/agent-cli
	$(BIN)/python bench/bench_tables.py
	$(BIN)/python bench/bench_diff.py
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python bench/bench_agentd.py
	$(BIN)/python bench/bench_collector.py

## lint: ruff (check and format --check) and mypy over the packages
lint: $(BIN)/agent-cli
	$(BIN)/pip install --quiet -e '.[test,lint]'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy agent tables eventsources protocol collector

clean:
	rm -rf $(VENV) .pytest_cache state
