# Pipeline Guard — the two commands users need: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run demo test test-fast test-real test-faults test-scenarios bench lint migrate clean venv dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel

$(VENV)/.installed-run: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

venv: $(VENV)/.installed-run
dev: $(VENV)/.installed-dev

## make run: migrate the embedded SQLite database, create the first admin, serve on 127.0.0.1:8080, print next steps
run: $(VENV)/.installed-run
	$(BIN)/pipeline-guard serve --host $(HOST) --port $(PORT) --next-steps

## make demo: guard the flaky example worker and watch it heal
demo: $(VENV)/.installed-run
	$(BIN)/python examples/demo.py $(ARGS)

migrate: $(VENV)/.installed-run
	$(BIN)/pipeline-guard db upgrade

# Test processes run side by side (pytest-xdist): most tests wait on real guards, targets and timers, not on
# the CPU. `TEST_WORKERS=0` runs the suite in one process.
TEST_WORKERS ?= 3
XDIST = -n $(TEST_WORKERS)

## make test: the whole suite (SQLite always; Postgres too when PIPELINE_TEST_POSTGRES_URL is set)
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -x $(XDIST) -m "not realclients and not faults and not docs and not scenarios" $(PYTEST_ARGS)

test-real: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m realclients $(PYTEST_ARGS)

test-faults: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m faults $(PYTEST_ARGS)

## make test-scenarios: whole incident lives with real guard and workload processes (tests/scenarios)
test-scenarios: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider -m scenarios tests/scenarios $(PYTEST_ARGS)

BENCHES ?= probes healing health api_scale leases lease_storage ingest ingest_stages summary nab nab_cv cli_help ratelimit_redis

## make bench: every benchmark; each prints its figure beside a baseline measured in the same run
bench: $(VENV)/.installed-dev
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

## make lint: ruff (rules and format) over the code, tests and benches, mypy over app/ (settings in pyproject.toml); runs all three, fails if any does
lint: $(VENV)/.installed-dev
	@status=0; $(BIN)/ruff check app tests bench || status=1; \
	$(BIN)/ruff format --check app tests bench || status=1; \
	$(BIN)/mypy app || status=1; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
