"""`akave-gateway`: one console script, a subcommand per service and per operation."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.api.api_keys import add_apikey_commands, run_apikey_command
from shared.errors import InsecureSecretFile
from shared.log_setup import configure_logging
from shared.migrations import migrate
from shared.settings import Settings


def _service(name: str, settings: Settings) -> None:
    from shared import signals

    signals.hold()  # before the imports below: a stop during them is a clean stop
    from shared.tracing import start_tracing

    stop_tracing = start_tracing(settings, name)
    try:
        _run_service(name, settings)
    finally:
        stop_tracing()  # exports the spans still buffered


def _run_service(name: str, settings: Settings) -> None:
    from shared.lifecycle import run_service

    if name == "executor":
        from services.executor.runner import run as executor

        run_service(lambda stop: executor(settings, stop))
    elif name == "projector":
        from services.projector.runner import run as projector

        run_service(lambda stop: projector(settings, stop))
    elif name == "notifier":
        from services.notifier.runner import run as notifier

        run_service(lambda stop: notifier(settings, stop))


def _api(settings: Settings) -> None:
    import uvicorn

    from services.api.api_keys import load_key_ring
    from services.api.errors import ApiKeyConfigError

    try:
        load_key_ring(settings.api_keys, settings.api_keys_file)
    except ApiKeyConfigError as exc:
        raise SystemExit(f"refusing to start: {exc}") from None

    with _metrics_shared_by_workers(settings.api_workers):
        uvicorn.run(
            "services.api.app:create_app",
            factory=True,
            host=settings.api_host,
            port=settings.api_port,
            workers=settings.api_workers,
            log_config=None,
            access_log=False,
        )


@contextmanager
def _metrics_shared_by_workers(workers: int) -> Iterator[None]:
    """With several workers, a PROMETHEUS_MULTIPROC_DIR they all write their metrics to (and
    /metrics sums): the one the environment names, emptied first, else a temporary one."""
    from services.api.http_metrics import MULTIPROC_ENV

    if workers == 1:
        yield
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):  # values of an earlier run's processes
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="akave-api-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _topics(settings: Settings) -> None:
    """Refuses (exit 1, with the reason) an event topic whose partition count is not
    TOPIC_PARTITIONS: the gateway never grows a topic."""
    from shared.kafka import ensure_topics, partition_count_problem

    problem = partition_count_problem(settings, asyncio.run(ensure_topics(settings)))
    if problem is not None:
        raise SystemExit(f"refusing: {problem}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="akave-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("api", help="serve the HTTP API")
    commands.add_parser("executor", help="run bucket jobs against the Akave backend")
    commands.add_parser("projector", help="fold the event log into bucket_jobs")
    commands.add_parser("notifier", help="deliver BucketCreated/BucketFailed to webhooks")
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("topics", help="create the event and dead-letter topics")
    replay = commands.add_parser(
        "replay",
        help="rebuild bucket_jobs from offset 0 beside the live table, then swap it in",
    )
    replay.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    replay.add_argument(
        "--keep-old", action="store_true", help="keep the replaced tables in a schema of their own"
    )
    replay.add_argument(
        "--workers",
        type=int,
        help="bulk-load processes (default: one per CPU, at most one per partition)",
    )
    replay.add_argument(
        "--batch-records",
        type=int,
        help="records per fetch in the bulk phase, and so the most finished rows held in "
        "memory before they are written (default 20000)",
    )
    commands.add_parser(
        "dev",
        help="local stack: Postgres + Kafka + migrations + api, executor, projector, notifier",
    )
    _parked_parser(commands)
    snapshots = commands.add_parser("snapshots", help="list or drop the executor's snapshots")
    snapshot_actions = snapshots.add_subparsers(dest="action", required=True, metavar="ACTION")
    snapshot_actions.add_parser("list", help="each partition's snapshot: position, jobs, age")
    dropping = snapshot_actions.add_parser(
        "drop", help="delete snapshots with their index (safe: the partition is folded again)"
    )
    dropping.add_argument("--partition", type=int, help="one partition (default: all)")
    apikey = commands.add_parser("apikey", help="API keys: `apikey new` prints a fresh one")
    add_apikey_commands(apikey)
    args = parser.parse_args(argv)
    if args.command == "apikey":
        sys.exit(run_apikey_command(args))

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, secrets=_secrets(settings))
    if args.command == "api":
        _api(settings)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "topics":
        _topics(settings)
    elif args.command == "replay":
        from services.projector.replay.rebuild import main as replay_main

        sys.exit(
            replay_main(
                settings,
                progress_bar=not args.no_progress,
                keep_old=args.keep_old,
                workers=args.workers,
                batch_records=args.batch_records,
            )
        )
    elif args.command == "dev":
        from localinfra.dev import run_dev

        sys.exit(run_dev(settings))
    elif args.command == "parked":
        sys.exit(_parked(args, settings))
    elif args.command == "snapshots":
        from cli import snapshots as snapshot_commands

        if args.action == "list":
            sys.exit(snapshot_commands.list_command(settings))
        sys.exit(snapshot_commands.drop_command(settings, args.partition))
    else:
        _service(args.command, settings)


def _parked_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parked = commands.add_parser("parked", help="list or redrive records on the dead-letter topic")
    actions = parked.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every parked record, once, with its consumers")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    again = actions.add_parser("redrive", help="re-append parked records to their topic, once")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "ids",
        nargs="*",
        default=[],
        metavar="PARTITION:OFFSET",
        help="dead-letter positions, as `parked list` shows them",
    )
    which.add_argument("--all", action="store_true", help="every record not yet redriven")
    again.add_argument("--dry-run", action="store_true", help="say what would be redriven")
    again.add_argument("--json", action="store_true", help="machine-readable output")


def _parked(args: argparse.Namespace, settings: Settings) -> int:
    from cli import parked

    if args.action == "list":
        return parked.list_command(settings, args.json)
    return parked.redrive_command(settings, args.ids, args.all, args.dry_run, args.json)


def _secrets(settings: Settings) -> list[str]:
    try:
        key = settings.private_key()
    except InsecureSecretFile as exc:
        raise SystemExit(f"refusing to start: {exc.strerror}") from None
    except OSError:
        return []
    return [key] if key else []
