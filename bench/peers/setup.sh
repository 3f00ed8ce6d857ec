#!/usr/bin/env bash
# Create one isolated virtualenv per peer job queue, from exact pins:
#   bench/.venvs/<peer>/   <-  bench/peers/<peer>-requirements.txt
#
# Usage: bash bench/peers/setup.sh [--recreate] [peer ...]
#   peers default to: pgqueuer procrastinate chancy
#   --recreate  wipe and rebuild the venv(s) instead of updating in place
# Env: PYTHON (default python3; needs >= 3.11 for chancy), VENVS_DIR
#      (default bench/.venvs).  Needs only PyPI.  The peers' packages never
#      touch our own environment.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS_DIR="${VENVS_DIR:-$(dirname "$HERE")/.venvs}"
PYTHON="${PYTHON:-python3}"

recreate=0
peers=()
for arg in "$@"; do
  case "$arg" in
    --recreate) recreate=1 ;;
    pgqueuer|procrastinate|chancy) peers+=("$arg") ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
[ ${#peers[@]} -eq 0 ] && peers=(pgqueuer procrastinate chancy)

declare -A import_name=([pgqueuer]=pgqueuer [procrastinate]=procrastinate [chancy]=chancy)

mkdir -p "$VENVS_DIR"
for peer in "${peers[@]}"; do
  venv="$VENVS_DIR/$peer"
  req="$HERE/$peer-requirements.txt"
  echo "== $peer -> $venv"
  if [ "$recreate" = 1 ] && [ -d "$venv" ]; then
    rm -rf -- "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
  fi
  # timeout: never hang on the registry
  timeout 900 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-virtualenv -r "$req"
  "$venv/bin/python" -m pip check --disable-pip-version-check
  "$venv/bin/python" - "$peer" "${import_name[$peer]}" <<'EOF'
import importlib, importlib.metadata, sys
peer, mod = sys.argv[1], sys.argv[2]
importlib.import_module(mod)
print(f"   {peer} {importlib.metadata.version(peer)} OK ({sys.executable})")
EOF
done
