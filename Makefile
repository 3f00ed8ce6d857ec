# pgcue — the README's commands. Everything installs into .venv from constraints.txt.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup run test test-package wheelhouse bench lint db migrate clean schema-snapshot

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[server,dev]'
	touch $(STAMP)

setup: $(STAMP)  ## install pgcue and its dev tools into .venv

run: setup  ## database (embedded default), migrations, API and one worker per job type
	$(BIN)/pgcue dev

test: setup  ## the test suite against PostgreSQL (PGCUE_TEST_DSN, default 127.0.0.1:5432)
	$(BIN)/pytest -q --ignore=tests/package

wheelhouse: setup  ## wheels of pgcue and of everything constraints.txt pins for it, in build/wheelhouse
	$(BIN)/pip wheel --quiet -c constraints.txt -w build/wheelhouse '.[server]'

test-package: wheelhouse  ## the wheel installed outside the checkout with no index migrates and runs a worker
	$(BIN)/pytest -q tests/package

bench: setup  ## benchmarks (not part of make test); results in bench/results/
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: setup  ## ruff, mypy and the import layers (ops/dev/lint.py)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check service workers tests bench ops
	$(BIN)/python ops/dev/lint.py

db: setup  ## apply migrations to the configured database
	$(BIN)/pgcue migrate

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache build

schema-snapshot: setup  ## regenerate migrations/schema.sql from a replay of migrations/ (review the diff)
	$(BIN)/python -m tests.helpers.snapshot
