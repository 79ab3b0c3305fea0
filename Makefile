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

## run: the whole pipeline on this machine: collectord and a local agentd; Zeek-format osq-*.log in ./logs (Ctrl-C stops both)
run: $(BIN)/agent-cli
	@echo "collectord + agentd: osq-*.log in ./logs; try: $(BIN)/agent-cli --collector ws://127.0.0.1:9440 status"
	$(BIN)/collectord --with-local-agent

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
	$(BIN)/python bench/bench_pipeline.py

## lint: ruff (check and format --check) and mypy over the packages
lint: $(BIN)/agent-cli
	$(BIN)/pip install --quiet -e '.[test,lint]'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy agent tables eventsources protocol collector

clean:
	rm -rf $(VENV) .pytest_cache state collector-state logs
