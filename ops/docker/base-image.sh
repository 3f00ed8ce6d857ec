#!/usr/bin/env bash
# A Debian bookworm base image made here, for machines that cannot pull from a registry:
# `debootstrap --variant=minbase` from the Debian mirror apt already uses, imported with
# `docker import`. It has no Python: the Dockerfile installs Debian's python3 into it.
# Kept between runs: when the image exists this does nothing (PGCUE_BASE_REBUILD=1 forces).
#   usage: ops/docker/base-image.sh [IMAGE]     (default pgcue-base:bookworm)
set -euo pipefail
IMAGE="${1:-pgcue-base:bookworm}"
DOCKER="${DOCKER:-docker}"
if [ -z "${PGCUE_BASE_REBUILD:-}" ] && $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists; not rebuilding it"
  exit 0
fi
# The mirror this machine's apt uses (deb822 sources or a one-line sources.list).
MIRROR="${PGCUE_DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n 1 || true)"
fi
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n 1 || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
ROOTFS="$(mktemp -d /tmp/pgcue-base.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm from $MIRROR (minbase) ..."
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
# The suites a Debian image follows: bookworm, its updates and its security fixes.
SECURITY="$(grep -hE '^URIs:.*security|^deb .*security' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | sed -E 's/^URIs: *//; s/^deb +//' | awk '{print $1}' | head -n 1 || true)"
SECURITY="${SECURITY:-http://deb.debian.org/debian-security}"
cat > "$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
SOURCES
# What an image does not need: apt lists, caches, logs (the build stages run apt-get update).
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log
tar -C "$ROOTFS" --numeric-owner -c . | $DOCKER import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "imported $IMAGE ($($DOCKER image inspect -f '{{.Size}}' "$IMAGE") bytes)"
