#!/usr/bin/env bash
# make test-deploy: everything a deployment of pgcue relies on, built and run on this
# machine. Installs what it needs (Debian's docker.io, docker-compose, debootstrap,
# pgbouncer; the [deploy] extras), starts dockerd when it is not running, makes a base
# image when no registry answers (kept between runs), builds the image, then runs:
#   tests/deploy       the generated files, the Kubernetes tree (kustomize, strict
#                      validation, KEDA's CRDs), every type's KEDA query on a real schema
#   tests/containers   the image against PostgreSQL, docker stop mid-job, compose up/down
#   --pgbouncer        the core queue, SSE and pooled-mode tests through a real PgBouncer
set -euo pipefail
cd "$(dirname "$0")/../.."
BEGAN=$(date +%s)
say() { echo "test-deploy [$(( $(date +%s) - BEGAN ))s] $*"; }
export DEBIAN_FRONTEND=noninteractive
TAG="${PGCUE_TEST_IMAGE:-pgcue:test}"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "apt-get update; Debian packages: docker.io docker-compose debootstrap pgbouncer"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io docker-compose debootstrap pgbouncer >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  (dockerd >/tmp/pgcue-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null || { tail -20 /tmp/pgcue-dockerd.log; exit 1; }
fi
# (pip's and setuptools' chatter goes to a log, shown when the install fails)
.venv/bin/pip install --quiet -c constraints.txt -e '.[dev,deploy]' >/tmp/pgcue-test-deploy-pip.log 2>&1 \
  || { tail -30 /tmp/pgcue-test-deploy-pip.log; exit 1; }

# The base: python:3.11-slim when a registry gives it, else Debian made here.
BASE="${PGCUE_TEST_BASE:-}"
if [ -z "$BASE" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1 || timeout 30 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    BASE=python:3.11-slim
  else
    say "no registry answers (docker pull python:3.11-slim failed): a debootstrap base"
    ops/docker/base-image.sh pgcue-base:bookworm
    BASE=pgcue-base:bookworm
  fi
fi
say "building $TAG on $BASE"
ops/docker/build-image.sh "$TAG" "$BASE"
if [ "$BASE" = python:3.11-slim ]; then
  # A registry answers: compose pulls the real PostgreSQL and Prometheus images.
  export PGCUE_TEST_POSTGRES_IMAGE=postgres:16 PGCUE_TEST_PROMETHEUS_IMAGE=prom/prometheus:v2.53.0
else
  # None does: stand-ins from Debian's packages on the same base (cached by Docker).
  for stand_in in postgres:pgcue-stand-in-postgres:15 prometheus:pgcue-stand-in-prometheus; do
    name="${stand_in%%:*}"; image="${stand_in#*:}"
    docker build --quiet -f "ops/docker/stand-ins/$name.Dockerfile" --build-arg "BASE=$BASE" \
      -t "$image" ops/docker/stand-ins 2>/dev/null >/dev/null \
      || docker build -f "ops/docker/stand-ins/$name.Dockerfile" --build-arg "BASE=$BASE" -t "$image" ops/docker/stand-ins
  done
  say "stand-in images for PostgreSQL and Prometheus built"
fi

export PGCUE_TEST_DOCKER=1 PGCUE_TEST_IMAGE="$TAG"
say "tests/deploy and tests/containers"
.venv/bin/pytest -q -p no:cacheprovider tests/deploy tests/containers
say "core queue, SSE and pooled-mode tests through PgBouncer"
.venv/bin/pytest -q -p no:cacheprovider --pgbouncer tests/db/test_queue.py tests/http/test_sse.py \
  tests/db/test_pooled.py tests/deploy/test_keda.py
say "done: image $TAG on $BASE"
