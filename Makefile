# pgcue — the README's commands. Everything installs into .venv from constraints.txt.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The container image (ops/docker/): its tag, and the base it is built on (any Debian
# bookworm image; ops/docker/base-image.sh makes one where no registry answers).
IMAGE   ?= pgcue:latest
BASE    ?= python:3.11-slim
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: setup run test test-package wheelhouse bench lint db migrate clean schema-snapshot \
	image up down deploy-files test-deploy

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

image: wheelhouse  ## the container image, built from the wheelhouse with no index (IMAGE=, BASE=)
	ops/docker/build-image.sh $(IMAGE) $(BASE)

up: image  ## local stack in one command: PostgreSQL, migrations, the API, a worker per type, Prometheus
	PGCUE_IMAGE=$(IMAGE) $(COMPOSE) -p pgcue -f ops/compose.yaml up -d
	@echo "pgcue: API on http://127.0.0.1:$${PGCUE_API_PORT:-8000}, Prometheus on http://127.0.0.1:$${PGCUE_PROMETHEUS_PORT:-9090}"
	@echo "pgcue: a key:  $(COMPOSE) -p pgcue -f ops/compose.yaml run --rm -T migrate keys create --user dev --plan paid --channel demo"

down:  ## stop the local stack (its data stays; add -v by hand to drop it)
	$(COMPOSE) -p pgcue -f ops/compose.yaml down

deploy-files: setup  ## regenerate ops/k8s/, ops/compose.yaml, ops/prometheus/{prometheus,compose}.yml from the registry
	$(BIN)/pgcue deploy all

test-deploy: wheelhouse  ## image, containers, compose, the Kubernetes tree, KEDA queries, PgBouncer mode (as root)
	ops/dev/test-deploy.sh

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
