# ariacluster — `make run` starts a local cluster, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install run test test-sqlite test-postgres lint typecheck migrations-check schema-check bench ci clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Dispatcher on 127.0.0.1:8000 + two local workers (downloads/worker1, downloads/worker2).
run: $(STAMP)
	$(PY) manage.py runcluster

## The whole suite: lint, types, migrations check, tests on SQLite, then PostgreSQL + Redis.
test: $(STAMP) lint typecheck migrations-check schema-check test-sqlite test-postgres

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy ariacluster dispatcher workers_app worker_agent

migrations-check: $(STAMP)
	$(PY) manage.py makemigrations --check --dry-run

## The OpenAPI schema must generate without a single warning.
schema-check: $(STAMP)
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

test-sqlite: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL $(VENV)/bin/pytest -q -m "not postgres"

## PostgreSQL + Redis pass (they must be reachable: see README).
test-postgres: $(STAMP)
	$(PY) -m tests.support.services_check "$(TEST_POSTGRES_URL)" "$(TEST_REDIS_URL)"
	DATABASE_URL="$(TEST_POSTGRES_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
		$(VENV)/bin/pytest -q -m "not sqlite_only and not any_backend" ariacluster dispatcher workers_app tests

## Every benchmark of docs/benchmarks.md at small size (full size: drop --small, see the doc).
BENCHES := b1_latency b2_dataplane b3_small_tasks b4_control_plane b5_queue b6_memory b7_failover b8_dashboard
bench: $(STAMP)
	set -e; for b in $(BENCHES); do $(PY) -m bench.$$b --small; done

ci: test

clean:
	rm -rf $(VENV) data downloads .pytest_cache .mypy_cache .ruff_cache
