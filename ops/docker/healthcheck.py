"""The image's HEALTHCHECK: GET /healthz of whatever this container runs, with the
standard library only (it starts in milliseconds, every 15 s).

PGCUE_HEALTH_URL names the URL; otherwise it is read off the container's command (PID 1
is tini, then pgcue and its arguments): `serve` answers on PGCUE_PORT (or --port), a
`worker` or `maintenance` on its --metrics-port. A worker started without a metrics port
has no endpoint to ask, and counts as healthy.
"""

import os
import sys
import urllib.request


def _command() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def url() -> str | None:
    explicit = os.environ.get("PGCUE_HEALTH_URL")
    if explicit:
        return explicit
    argv = _command()
    role = next((a for a in argv if a in ("serve", "worker", "maintenance")), "serve")
    if role == "serve":
        port = _option(argv, "--port") or os.environ.get("PGCUE_PORT") or "8000"
    else:
        port = _option(argv, "--metrics-port") or ""
        if not port:
            return None
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    target = url()
    if target is None:
        print("no health endpoint (no --metrics-port): healthy while running")
        return 0
    try:
        with urllib.request.urlopen(target, timeout=4) as answer:
            print(answer.status, answer.read(200).decode(errors="replace"))
            return 0 if answer.status == 200 else 1
    except Exception as exc:
        print(f"{target}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
