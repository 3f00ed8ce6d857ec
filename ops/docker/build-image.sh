#!/usr/bin/env bash
# Build the pgcue image from the wheelhouse (`make wheelhouse` first; `make image` does both).
#   usage: ops/docker/build-image.sh [TAG] [BASE]
#   TAG   default pgcue:latest
#   BASE  default python:3.11-slim; any Debian bookworm image works (ops/docker/base-image.sh)
# The build context is staged in build/image-context with only what the Dockerfile copies
# (the wheelhouse, constraints.txt, ops/docker), so the daemon is sent a few MB, not the
# checkout with its virtualenv.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG="${1:-pgcue:latest}"
BASE="${2:-python:3.11-slim}"
DOCKER="${DOCKER:-docker}"
test -n "$(ls build/wheelhouse/pgcue-*.whl 2>/dev/null)" || { echo "no build/wheelhouse: run make wheelhouse" >&2; exit 1; }
CTX=build/image-context
rm -rf "$CTX"
mkdir -p "$CTX/build" "$CTX/ops"
cp -r build/wheelhouse "$CTX/build/wheelhouse"
cp constraints.txt "$CTX/"
cp -r ops/docker "$CTX/ops/docker"
build() {  # (the legacy builder's deprecation notice is dropped; anything else it says is shown)
  $DOCKER build --quiet -f "$CTX/ops/docker/Dockerfile" --build-arg "BASE=$BASE" "$@" "$CTX" 2> >(grep -vE \
    'legacy builder is deprecated|Install the buildx component|docs.docker.com/go/buildx|^\s*$' >&2) >/dev/null
}
# The build stage gets a tag of its own, so that it stays as the next build's cache while
# the images this build replaces (the previous $TAG, earlier build stages) are pruned:
# repeated builds do not fill the disk.
build --target build -t "${TAG%%:*}-build-stage:cache"
build -t "$TAG"
$DOCKER image prune --force >/dev/null
echo "built $TAG on $BASE ($($DOCKER image inspect -f '{{.Size}}' "$TAG") bytes)"
