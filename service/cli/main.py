"""`pgcue`: migrate | serve | worker | workers | dev | types | jobs …

Errors are one line on stderr and a non-zero exit: 1 for a refused action or an
unreachable database, 2 for a malformed command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import psycopg
import uvloop
from pgcue.core import db
from pgcue.core.config import ConfigError, Settings, from_env
from pgcue.core.errors import PgcueError
from pgcue.core.gc_tuning import settle_garbage_collector
from pgcue.core.logs import configure as configure_logging
from pgcue.core.models import FINISHED_STATES, Job, JobState, NewJob
from pgcue.core.queue import Queue
from pgcue.core.statements import channel

ROOT = Path.cwd()  # `make run` runs from the checkout: .data/ lives there


class CliError(Exception):
    """A one-line message for the user."""


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


def _job_out(job: Job) -> dict[str, Any]:
    out = msgspec.to_builtins(job)
    out["durationMs"] = job.duration_ms
    return out


async def _with_queue(settings: Settings, fn: Callable[[Queue], Coroutine[Any, Any, Any]]) -> Any:
    pool = await db.create_pool(settings, min_size=1, max_size=2, application_name="pgcue-cli")
    try:
        return await fn(Queue(pool, settings.schema))
    finally:
        await pool.close()


# --- commands ----------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.core import migrate

    with db.connect_sync(settings) as conn:
        if args.check:
            migrate.check(conn, settings.schema)
            print(f"schema {settings.schema!r} is current (migration {migrate.latest_version()})")
            return 0
        done = migrate.migrate(conn, settings.schema)
    _sync_types(settings, args.imports)
    if done:
        print(f"applied {', '.join(f'{m.version:04d}_{m.name}' for m in done)} to schema {settings.schema!r}")
    else:
        print(f"schema {settings.schema!r} already current (migration {migrate.latest_version()})")
    return 0


def _sync_types(settings: Settings, imports: list[str] | None) -> None:
    """Write the registry's job types (built-in, studio, and imported) to pgcue.job_types."""
    from pgcue.workers.runtime import registry

    registry.load([*settings.imports, *(imports or [])])

    async def sync(queue: Queue) -> None:
        await queue.register_types([s.row() for s in registry.all_types()])
        await queue.register_schedules(registry.all_schedules())

    asyncio.run(_with_queue(settings, sync))


def _check_schema(settings: Settings) -> None:
    from pgcue.core import migrate

    with db.connect_sync(settings) as conn:
        migrate.check(conn, settings.schema)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.api.server import run

    _check_schema(settings)
    run(settings, args.host or settings.host, args.port or settings.port)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.workers.runtime import registry
    from pgcue.workers.runtime.worker import Worker, apply_memory_limit, install_signal_handlers

    registry.load([*settings.imports, *args.imports])
    try:
        specs = [registry.get(name) for name in args.types]
    except KeyError as exc:
        raise CliError(exc.args[0]) from None
    missing = [s.name for s in specs if s.handler is None]
    if missing:
        raise CliError(
            f"no handler for job type(s) {', '.join(missing)}: import the module that registers "
            "it with --import or PGCUE_IMPORTS"
        )
    _check_schema(settings)
    memory = args.memory_mb
    if memory is None and not args.no_memory_limit and len(specs) == 1:
        memory = specs[0].memory_mb
    if memory:
        apply_memory_limit(memory)
    worker = Worker(settings, specs, concurrency=args.concurrency, maintenance=not args.no_maintenance)
    if args.metrics_port:
        from pgcue.core.metrics import serve_worker

        serve_worker(worker, args.metrics_port, args.metrics_host)

    async def main() -> None:
        install_signal_handlers(worker)
        settle_garbage_collector()
        await worker.run()

    uvloop.run(main())  # the worker's loop: claims, completions and heartbeats all go through it
    return 0


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.cli.supervisor import supervise
    from pgcue.workers.runtime import registry

    registry.load([*settings.imports, *args.imports])
    names = args.types or [s.name for s in registry.runnable()]
    _check_schema(settings)
    return supervise(names, args.imports)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.cli import devdb
    from pgcue.cli.supervisor import run_dev_stack
    from pgcue.core import migrate
    from pgcue.workers.runtime import registry

    url, how = devdb.resolve(ROOT)
    print(f"pgcue dev: database is {how}", flush=True)
    settings = settings.replace(database_url=url)
    with db.connect_sync(settings) as conn:
        migrate.migrate(conn, settings.schema)
    _sync_types(settings, [])
    registry.load(settings.imports)
    # --- development API key (issue 3): printed so a newcomer can call the API at once ---
    key = _dev_key(settings)
    base = f"http://{settings.host}:{settings.port}"
    print(f"pgcue dev: API key (user dev, paid plan, channel demo): {key}", flush=True)
    print(
        f"pgcue dev: try  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f'-d \'{{"type":"echo","channelId":"demo","payload":{{"hi":1}}}}\' {base}/api/jobs',
        flush=True,
    )
    return run_dev_stack(settings, [s.name for s in registry.runnable()])


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """`pgcue keys create`: a user (with its plan), its channels, and a new API key."""
    from pgcue.core.auth import create_key

    token = asyncio.run(
        _with_queue(
            settings,
            lambda q: create_key(
                q.pool, q.sql, args.user, plan=args.plan, admin=args.admin, channels=args.channels, label=args.label
            ),
        )
    )
    print(token)
    return 0


def _dev_key(settings: Settings) -> str:
    """The development key `make run` prints: saved in .data/dev-key, reused while valid."""
    from pgcue.core.auth import ensure_dev_key

    path = ROOT / ".data" / "dev-key"
    saved = path.read_text().strip() if path.exists() else None
    token: str = asyncio.run(_with_queue(settings, lambda q: ensure_dev_key(q.pool, q.sql, saved)))
    if token != saved:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token + "\n")
        path.chmod(0o600)
    return token


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    """`pgcue pause|resume --type T | --channel C`: claims stop (or go on); running jobs finish."""
    paused = args.command == "pause"

    async def run(queue: Queue) -> None:
        if args.type:
            await queue.set_type_paused(args.type, paused)
        else:
            await queue.set_channel_paused(args.channel, paused, args.reason)

    asyncio.run(_with_queue(settings, run))
    what = f"job type {args.type}" if args.type else f"channel {args.channel}"
    print(f"{what} {'paused' if paused else 'resumed'}")
    return 0


def cmd_types(args: argparse.Namespace, settings: Settings) -> int:
    types = asyncio.run(_with_queue(settings, lambda q: q.job_types()))
    _print_json(types)
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    action = args.jobs_command

    async def run(queue: Queue) -> Any:
        if action == "enqueue":
            job = await queue.enqueue(_new_job(args))
            if args.wait is not None:
                job = await _wait_finished(settings, queue, job.id, args.wait)
            return _job_out(job)
        if action == "get":
            return _job_out(await queue.get(_job_id(args.id)))
        if action == "list":
            jobs = await queue.list_jobs(channel_id=args.channel, type=args.type, state=args.state, limit=args.limit)
            return [_job_out(j) for j in jobs]
        if action == "cancel":
            return _job_out(await queue.cancel(_job_id(args.id)))
        if action == "retry":
            return _job_out(await queue.retry(_job_id(args.id)))
        if action == "delete":
            await queue.delete(_job_id(args.id))
            return {"deleted": args.id}
        raise CliError(f"unknown jobs command {action}")

    result = asyncio.run(_with_queue(settings, run))
    _print_json(result)
    if action == "enqueue" and args.wait is not None and result["state"] != JobState.COMPLETED:
        return 1
    return 0


def _job_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CliError(f"{text!r} is not a job id (a UUID such as 0190b2c4-…)") from None


def _new_job(args: argparse.Namespace) -> NewJob:
    try:
        payload = msgspec.json.decode(args.payload) if args.payload else {}
    except msgspec.DecodeError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}") from None
    run_at = None
    if args.run_at:
        try:
            run_at = datetime.fromisoformat(args.run_at)
        except ValueError:
            raise CliError(f"--run-at {args.run_at!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
        if run_at.tzinfo is None:
            raise CliError("--run-at needs a time zone (e.g. a trailing Z for UTC)")
    elif args.delay:
        run_at = datetime.now(UTC) + timedelta(seconds=args.delay)
    return NewJob(
        type=args.type,
        channel_id=args.channel,
        payload=payload,
        owner_id=args.owner,
        priority=args.priority,
        run_at=run_at,
        max_attempts=args.max_attempts,
        idempotency_key=args.key,
    )


async def _wait_finished(settings: Settings, queue: Queue, job_id: uuid.UUID, timeout: float) -> Job:
    """Wait for the job to finish: woken by its events, re-reading it at least every second."""
    conn = await db.connect(settings, application_name="pgcue-cli-wait")
    changed = asyncio.Event()
    await conn.add_listener(channel(settings.schema, "events"), lambda *_: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                job = await queue.get(job_id)
                if job.state in FINISHED_STATES:
                    return job
                try:
                    await asyncio.wait_for(changed.wait(), 1.0)
                except TimeoutError:
                    pass
    except TimeoutError:
        raise CliError(f"job {job_id} did not finish within {timeout:g}s (is a worker running for its type?)") from None
    finally:
        await conn.close()


# --- argument parsing --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgcue", description="A PostgreSQL-native job queue.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="apply database migrations (idempotent)")
    m.add_argument("--check", action="store_true", help="only check that the schema is current")
    m.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="also register the job types of MODULE",
    )
    m.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("serve", help="run the HTTP API")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.set_defaults(fn=cmd_serve)

    w = sub.add_parser("worker", help="run one worker process for one or more job types")
    w.add_argument("--type", dest="types", action="append", required=True, metavar="TYPE")
    w.add_argument("--concurrency", type=_positive_int, help="handlers at once per type (default: the type's)")
    w.add_argument("--memory-mb", type=_positive_int, help="address-space limit for this process")
    w.add_argument("--no-memory-limit", action="store_true", help="do not apply the type's memory budget")
    w.add_argument("--no-maintenance", action="store_true", help="never lead rescue/prune in this process")
    w.add_argument("--metrics-port", type=_positive_int, help="serve Prometheus metrics on this port (/metrics)")
    w.add_argument("--metrics-host", default="0.0.0.0", help="address for --metrics-port (default 0.0.0.0)")
    w.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    w.set_defaults(fn=cmd_worker)

    ws = sub.add_parser("workers", help="run one worker process per job type, restarting crashed ones")
    ws.add_argument("--type", dest="types", action="append", metavar="TYPE")
    ws.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    ws.set_defaults(fn=cmd_workers)

    d = sub.add_parser("dev", help="database, migrations, API and workers in one command (make run)")
    d.set_defaults(fn=cmd_dev)

    k = sub.add_parser("keys", help="API keys, users and their channels")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create an API key (and the user and channels if new); prints the key once")
    kc.add_argument("--user", required=True, help="user id (created if new)")
    kc.add_argument("--plan", choices=["free", "paid"], help="set the user's plan (default for a new user: free)")
    kc.add_argument("--admin", action="store_true", help="the key sees and acts on every channel")
    kc.add_argument(
        "--channel", dest="channels", action="append", default=[], metavar="C", help="give channel C to the user"
    )
    kc.add_argument("--label", default="", help="a note to tell keys apart")
    k.set_defaults(fn=cmd_keys)

    for verb in ("pause", "resume"):
        pr = sub.add_parser(verb, help=f"{verb} claims of a job type or a channel (running jobs finish)")
        target = pr.add_mutually_exclusive_group(required=True)
        target.add_argument("--type", help="a job type")
        target.add_argument("--channel", help="a channel")
        pr.add_argument("--reason", default="", help="a note shown in pgcue.paused_channels")
        pr.set_defaults(fn=cmd_pause)

    t = sub.add_parser("types", help="list the registered job types and their settings")
    t.set_defaults(fn=cmd_types)

    j = sub.add_parser("jobs", help="enqueue and inspect jobs")
    jsub = j.add_subparsers(dest="jobs_command", required=True)
    e = jsub.add_parser("enqueue", help="enqueue a job and print it")
    e.add_argument("--type", required=True)
    e.add_argument("--channel", required=True, help="the channel the job belongs to")
    e.add_argument("--payload", help="JSON payload (default {})")
    e.add_argument("--owner", help="owner (user) id")
    e.add_argument("--priority", type=int, default=0, help="higher runs first (-1000 to 1000)")
    e.add_argument("--run-at", help="ISO 8601 time to run at")
    e.add_argument("--delay", type=float, help="seconds from now to run at")
    e.add_argument("--max-attempts", type=_positive_int)
    e.add_argument("--key", help="idempotency key: the same key returns the same job")
    e.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the job to finish; exit 1 unless completed")
    for name in ("get", "cancel", "retry", "delete"):
        c = jsub.add_parser(name, help=f"{name} a job")
        c.add_argument("id")
    ls = jsub.add_parser("list", help="list jobs, newest first")
    ls.add_argument("--channel")
    ls.add_argument("--type")
    ls.add_argument("--state", choices=[s.value for s in JobState])
    ls.add_argument("--limit", type=_positive_int, default=20)
    j.set_defaults(fn=cmd_jobs)
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = from_env()
        configure_logging(settings.log_level, settings.log_format)
        return int(args.fn(args, settings))
    except (CliError, ConfigError, PgcueError) as exc:
        print(f"pgcue: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, psycopg.Error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pgcue: database error: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
