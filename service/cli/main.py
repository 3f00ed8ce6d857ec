"""`pgcue`: migrate | serve | worker | maintenance | workers | dev | types | jobs … | keys … |
pause | resume | deploy

The one layer that imports both the API and the worker runtime. Errors are one line on
stderr and a non-zero exit: 1 for a refused action or an unreachable database, 2 for a
malformed command line, 78 for what no restart can fix (the database refuses our
credentials, the schema is not the one this pgcue needs, a setting is wrong), so a
supervisor stops restarting it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from pgcue.core import db, migrate
from pgcue.core.components import EXIT_FATAL_CONFIG
from pgcue.core.config import ConfigError, Settings, from_env
from pgcue.core.errors import PgcueError, SchemaMismatch
from pgcue.core.gc_tuning import settle_garbage_collector
from pgcue.core.listener import Listener
from pgcue.core.logs import configure as configure_logging
from pgcue.core.models import Job, NewJob
from pgcue.core.queue import Queue
from pgcue.core.states import JobState
from pgcue.core.wire import iso_ms

DATA_DIR = Path(".data")  # `make run` runs from the checkout: its dev key and private cluster live here


class CliError(Exception):
    """A one-line message for the user."""


class Fatal(Exception):
    """A one-line message, and exit status 78: retrying cannot help until someone acts."""


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


def _job_out(job: Job) -> Any:
    """A job as the API shows it: one JSON shape everywhere."""
    return job.to_wire()


async def _with_queue(settings: Settings, fn: Callable[[Queue], Coroutine[Any, Any, Any]]) -> Any:
    pool = await db.create_pool(settings, min_size=1, max_size=2, application_name="pgcue-cli")
    try:
        return await fn(Queue(pool, settings.schema))
    finally:
        await pool.close()


def _run(settings: Settings, fn: Callable[[Queue], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(_with_queue(settings, fn))


# --- commands ----------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.check and args.wait:
        return _wait_migrated(settings, args.wait)
    with db.connect_sync(settings) as conn:
        if args.check:
            migrate.check(conn, settings.schema)
            print(f"schema {settings.schema!r} is current (migration {migrate.latest_version()}, checksums match)")
            return 0
        done = migrate.migrate(conn, settings.schema, lock_timeout=settings.migration_lock_timeout)
    _sync_types(settings, args.imports)
    if done:
        print(f"applied {', '.join(m.label for m in done)} to schema {settings.schema!r}")
    else:
        print(f"schema {settings.schema!r} already current (migration {migrate.latest_version()})")
    return 0


def _wait_migrated(settings: Settings, timeout: float) -> int:
    """`pgcue migrate --check --wait S`: until the schema is current (a pod's init
    container, waiting for the migration Job), at most S seconds. An edited migration or
    a schema newer than this code stops the wait at once: no waiting can fix those."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        try:
            with db.connect_sync(settings) as conn:
                left = migrate.pending(conn, settings.schema)
            if not left:
                print(f"schema {settings.schema!r} is current (migration {migrate.latest_version()})", flush=True)
                return 0
            why = f"{len(left)} migration(s) to apply, from {left[0].label}"
        except SchemaMismatch as exc:
            raise Fatal(str(exc)) from None
        except Exception as exc:
            if not db.unavailable(exc):
                raise
            why = f"database unavailable: {db.describe(exc)}"
        if time.monotonic() >= deadline:
            raise CliError(f"schema still not current after {timeout:g}s: {why}")
        if why != said:
            print(f"pgcue: waiting for the migration: {why}", file=sys.stderr, flush=True)
            said = why
        time.sleep(2)


def _sync_types(settings: Settings, imports: list[str] | None) -> None:
    """Write the registry's job types (built-in and imported) and schedules to the database."""
    from pgcue.workers.runtime import registry

    registry.load([*settings.imports, *(imports or [])])

    async def sync(queue: Queue) -> None:
        await queue.register_types([s.row() for s in registry.all_types()])
        await queue.upkeep.register_schedules(registry.all_schedules())

    _run(settings, sync)


def _check_schema(settings: Settings) -> None:
    """At the start of a long-running process: refuse a schema this code does not match."""
    try:
        with db.connect_sync(settings) as conn:
            migrate.check(conn, settings.schema)
    except SchemaMismatch as exc:
        raise Fatal(str(exc)) from None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.api.server import run

    _check_schema(settings)
    run(settings, args.host or settings.host, args.port or settings.port)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.workers.runtime import registry
    from pgcue.workers.runtime.worker import Worker, apply_memory_limit

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
    worker = Worker(
        settings,
        specs,
        concurrency=args.concurrency,
        maintenance=not args.no_maintenance,
        max_jobs=args.max_jobs,
        idle_exit=args.idle_exit,
    )
    return _run_worker(worker, args)


def _run_worker(worker: Any, args: argparse.Namespace) -> int:
    from pgcue.workers.runtime.metrics import serve_worker
    from pgcue.workers.runtime.worker import install_signal_handlers

    if args.metrics_port:
        serve_worker(worker, args.metrics_port, args.metrics_host)

    async def main() -> int:
        install_signal_handlers(worker)
        settle_garbage_collector()
        return int(await worker.run())

    return uvloop.run(main())  # the worker's loop: claims, completions and heartbeats all go through it


def cmd_maintenance(args: argparse.Namespace, settings: Settings) -> int:
    """A process that runs no job type and only stands for maintenance leader (rescue,
    prune, cron, the artifact sweep): the always-on member of a fleet whose workers scale
    to zero and run with --no-maintenance (ops/k8s)."""
    from pgcue.workers.runtime import registry
    from pgcue.workers.runtime.worker import Worker

    registry.load([*settings.imports, *args.imports])  # their cron schedules
    _check_schema(settings)
    return _run_worker(Worker(settings, [], maintenance=True), args)


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.cli.supervisor import supervise
    from pgcue.workers.runtime import registry

    registry.load([*settings.imports, *args.imports])
    names = args.types or [s.name for s in registry.runnable()]
    _check_schema(settings)
    return supervise(names, args.imports, metrics_base=args.metrics_base)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from pgcue.cli import devdb
    from pgcue.cli.supervisor import run_dev_stack
    from pgcue.workers.runtime import registry

    url, how = devdb.resolve(DATA_DIR)
    print(f"pgcue dev: database is {how}", flush=True)
    settings = settings.replace(database_url=url)
    with db.connect_sync(settings) as conn:
        migrate.migrate(conn, settings.schema, lock_timeout=settings.migration_lock_timeout)
    _sync_types(settings, [])
    registry.load(settings.imports)
    key = _dev_key(settings)
    base = f"http://{settings.host}:{settings.port}"
    print(f"pgcue dev: API key (user dev, paid plan, channel demo): {key}", flush=True)
    print(
        f"pgcue dev: try  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f'-d \'{{"type":"echo","channelId":"demo","payload":{{"hi":1}}}}\' {base}/api/jobs',
        flush=True,
    )
    print(f"pgcue dev: the Jobs panel is {base}/ui (sign in with the key above)", flush=True)
    return run_dev_stack(settings, [s.name for s in registry.runnable()])


def _dev_key(settings: Settings) -> str:
    """The development key `make run` prints: saved in .data/dev-key (mode 0600), reused
    while valid."""
    path = DATA_DIR / "dev-key"
    saved = path.read_text().strip() if path.exists() else None
    token: str = _run(settings, lambda q: q.keys.ensure_dev_key(saved))
    if token != saved:
        DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, not even briefly
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        path.chmod(0o600)
    return token


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    """`pgcue deploy k8s|compose|prometheus|all [--root DIR] [--check]`: write the
    deployment files from the registry (built-in types and --import modules)."""
    import pgcue
    from pgcue.cli import deploy
    from pgcue.workers.runtime import registry

    registry.load([*settings.imports, *args.imports])
    specs = registry.runnable()
    if args.types:
        try:
            specs = [registry.get(name) for name in args.types]
        except KeyError as exc:
            raise CliError(exc.args[0]) from None
    options = deploy.Options(schema=settings.schema, image=args.image, tag=args.tag or pgcue.__version__)
    plans = deploy.plans(list(specs), settings.schema)
    make_run_types = [s.name for s in specs]
    root = Path(args.root)
    targets = deploy.TARGETS if args.target == "all" else (args.target,)
    found: list[str] = []
    for target in targets:
        files = deploy.generate(target, plans, options, make_run_types)
        if args.check:
            found += deploy.differences(root, files, target)
        else:
            for line in deploy.write(root, files, target):
                print(f"pgcue deploy: {line.replace('missing', 'wrote').replace('changed', 'rewrote')}")
    if args.check:
        if found:
            print("\n".join(f"pgcue deploy: {line}" for line in found), file=sys.stderr)
            print("pgcue deploy: the files differ from the registry: run `make deploy-files`", file=sys.stderr)
            return 1
        print(f"pgcue deploy: {', '.join(targets)} match the registry")
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """`pgcue keys create | list | revoke | rotate`."""
    action = args.keys_command
    if action == "create":
        token = _run(
            settings,
            lambda q: q.keys.create(
                args.user, plan=args.plan, admin=args.admin, channels=args.channels, label=args.label
            ),
        )
        print(token)
    elif action == "list":
        keys = _run(settings, lambda q: q.keys.list(args.user, revoked=args.revoked))
        _print_json(
            [
                {
                    "id": k.id,
                    "userId": k.user_id,
                    "plan": k.plan,
                    "admin": k.admin,
                    "channels": list(k.channels),
                    "label": k.label,
                    "createdAt": iso_ms(k.created_at),
                    "revokedAt": iso_ms(k.revoked_at),
                }
                for k in keys
            ]
        )
    elif action == "revoke":
        _run(settings, lambda q: q.keys.revoke(args.id))
        print(f"key {args.id} revoked: requests with it are refused now, its open streams end within seconds")
    elif action == "rotate":
        token = _run(settings, lambda q: q.keys.rotate(args.id))
        print(token)
    return 0


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    """`pgcue pause|resume --type T | --channel C`: claims stop (or go on); running jobs finish."""
    paused = args.command == "pause"

    async def run(queue: Queue) -> None:
        if args.type:
            await queue.fleet.set_type_paused(args.type, paused)
        else:
            await queue.fleet.set_channel_paused(args.channel, paused, args.reason)

    _run(settings, run)
    what = f"job type {args.type}" if args.type else f"channel {args.channel}"
    print(f"{what} {'paused' if paused else 'resumed'}")
    return 0


def cmd_types(args: argparse.Namespace, settings: Settings) -> int:
    types = _run(settings, lambda q: q.job_types())
    _print_json(
        [
            {
                "name": t.name,
                "plan": t.plan,
                "concurrency": t.concurrency,
                "memoryMb": t.memory_mb,
                "leaseSeconds": t.lease_seconds,
                "timeoutSeconds": t.timeout_seconds,
                "maxAttempts": t.max_attempts,
                "globalConcurrency": t.global_concurrency,
                "channelConcurrency": t.channel_concurrency,
                "rateLimit": t.rate_limit,
                "ratePeriodSeconds": t.rate_period_seconds,
                "description": t.description,
                "payloadSchema": t.payload_schema,
            }
            for t in types
        ]
    )
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    action = args.jobs_command

    async def run(queue: Queue) -> Any:
        if action == "enqueue":
            job = await queue.enqueue(_new_job(args))
            if args.wait is not None:
                job = await _wait_finished(settings, queue, job.id, args.wait)
            return job
        if action == "get":
            return await queue.get(_job_id(args.id))
        if action == "list":
            return await queue.list_jobs(
                channels=None if args.channel is None else [args.channel],
                type=args.type,
                state=args.state,
                limit=args.limit,
            )
        if action == "cancel":
            return await queue.cancel(_job_id(args.id))
        if action == "retry":
            return await queue.retry(_job_id(args.id))
        if action == "delete":
            await queue.delete(_job_id(args.id))
            return None
        raise CliError(f"unknown jobs command {action}")

    result = _run(settings, run)
    if action == "delete":
        _print_json({"deleted": args.id})
    elif isinstance(result, list):
        _print_json([_job_out(j) for j in result])
    else:
        _print_json(_job_out(result))
    if action == "enqueue" and args.wait is not None and result.state != JobState.COMPLETED:
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
    """Wait for the job to finish: woken by its events (the one Listener component),
    re-reading it at least every second."""
    changed = asyncio.Event()
    listener = Listener(
        settings,
        queue.fleet.notify,
        {settings.channel("events"): lambda _c, _p: changed.set()},
        component="cli",
        application_name="pgcue-cli-wait",
        on_connect=changed.set,
    )
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                job = await queue.get(job_id)
                if job.finished:
                    return job
                try:
                    await asyncio.wait_for(changed.wait(), 1.0)
                except TimeoutError:
                    pass
    except TimeoutError:
        raise CliError(f"job {job_id} did not finish within {timeout:g}s (is a worker running for its type?)") from None
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


# --- argument parsing --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgcue", description="A PostgreSQL-native job queue.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="apply database migrations (idempotent)")
    m.add_argument("--check", action="store_true", help="only check that the schema is current and unedited")
    m.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="with --check: wait until the schema is current (another process migrates it)",
    )
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
    w.add_argument(
        "--max-jobs", type=_positive_int, help="claim this many jobs in all, exit 0 once they are done (a Job's pod)"
    )
    w.add_argument(
        "--idle-exit", type=_positive_float, metavar="SECONDS", help="exit 0 after this long with nothing to run"
    )
    _metrics_arguments(w)
    w.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    w.set_defaults(fn=cmd_worker)

    mt = sub.add_parser("maintenance", help="lead maintenance only (rescue, prune, cron), running no job type")
    _metrics_arguments(mt)
    mt.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    mt.set_defaults(fn=cmd_maintenance)

    ws = sub.add_parser("workers", help="run one worker process per job type, restarting crashed ones")
    ws.add_argument("--type", dest="types", action="append", metavar="TYPE")
    ws.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    ws.add_argument(
        "--metrics-base", type=_positive_int, help="give the workers metrics ports from this one up (printed)"
    )
    ws.set_defaults(fn=cmd_workers)

    d = sub.add_parser("dev", help="database, migrations, API and workers in one command (make run)")
    d.set_defaults(fn=cmd_dev)

    dp = sub.add_parser("deploy", help="write the deployment files (Kubernetes, compose, Prometheus) from the registry")
    dp.add_argument("target", choices=["k8s", "compose", "prometheus", "all"])
    dp.add_argument("--root", default=".", help="write under this folder (default: .): ops/k8s/, ops/compose.yaml, …")
    dp.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files differ")
    dp.add_argument("--type", dest="types", action="append", metavar="TYPE", help="only these types (default: all)")
    dp.add_argument("--image", default="pgcue", help="the image the manifests run (default: pgcue)")
    dp.add_argument("--tag", help="its tag (default: this pgcue's version)")
    dp.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    dp.set_defaults(fn=cmd_deploy)

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
    kl = ksub.add_parser("list", help="list keys (never their tokens, which are not stored)")
    kl.add_argument("--user", help="only this user's keys")
    kl.add_argument("--revoked", action="store_true", help="include revoked keys")
    kr = ksub.add_parser("revoke", help="revoke a key now (its open streams end within seconds)")
    kr.add_argument("id", type=_positive_int, help="the key's id (pgcue keys list)")
    kt = ksub.add_parser("rotate", help="a new key for the same user and rights; the old one is revoked")
    kt.add_argument("id", type=_positive_int, help="the key's id (pgcue keys list)")
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


def _metrics_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port", type=_positive_int, help="serve Prometheus metrics (/metrics) and liveness (/healthz) here"
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for all)"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


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
    except (Fatal, ConfigError) as exc:
        print(f"pgcue: {exc}", file=sys.stderr)
        return EXIT_FATAL_CONFIG
    except (CliError, PgcueError) as exc:
        print(f"pgcue: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if db.fatal(exc):
            hint = ""
            if "unsupported startup parameter" in str(exc):
                hint = (
                    " (behind PgBouncer set PGCUE_DIRECT_DATABASE_URL to PostgreSQL itself, or"
                    " PGCUE_RANDOM_PAGE_COST=0 and PGCUE_JIT=true; see docs/deploy.md)"
                )
            print(f"pgcue: the database refuses this connection: {db.describe(exc)}{hint}", file=sys.stderr)
            return EXIT_FATAL_CONFIG
        if db.unavailable(exc) or db.sqlstate(exc):
            print(f"pgcue: database error: {db.describe(exc)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
