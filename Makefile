# One command runs the gateway (`make run`), one runs the tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit migrate infra-up infra-down clean chaos bench \
	test-containers test-compose

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/akave-gateway dev

# Benchmarks (not part of `make test`): `make bench`, or `make bench QUICK=1` for short runs.
# Needs wrk (Debian: apt-get install wrk). Figures in .local/bench/, see docs/benchmarks.md.
$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $@

bench: $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench $(if $(QUICK),--quick)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared services cli localinfra chaos

test: lint typecheck
	$(BIN)/pytest

# The fault suite's full run on a 2 s-block anvil (about 30 minutes, 10 scenarios, two of them on three brokers); e.g. CHAOS_ARGS="--jobs 200 --scenarios poison"
chaos: install
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# The image built from the Dockerfile and run as every service against Kafka, Postgres and a
# chain of its own (needs root: installs and starts Docker when missing). Not in `make test`.
test-containers: install
	$(BIN)/python -m localinfra.containers_run

# compose.yaml itself, with compose.local.yaml's locally built images (deploy/compose-local/).
test-compose: install
	deploy/compose-local/run.sh

migrate: install
	$(BIN)/akave-gateway migrate

infra-up: install
	$(BIN)/python -m localinfra up

infra-down: install
	$(BIN)/python -m localinfra down

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache .hypothesis
