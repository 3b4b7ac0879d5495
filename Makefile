# Switchyard — two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint typecheck bench dev clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/switchyard demo

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not e2e"

typecheck: install
	$(BIN)/mypy

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmark-only packages go on top of requirements.txt, which constrains them: installing
# them must never move a pinned runtime version.
bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt -c requirements.txt
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.vendor_rate --json bench/results.json

dev: install
	$(BIN)/switchyard dev

clean:
	rm -rf $(VENV) .state .pytest_cache
