#!/usr/bin/env python3
"""React to buckets created through the Akave Async Gateway, by reading its event topic.

Standalone: Python 3.10+ and aiokafka (`pip install aiokafka`), nothing else. Copy it and
replace `on_bucket_created` with what your system needs to do.

What it shows:
- its own consumer group, so it gets every event whatever the gateway's services do;
- a `BucketCreated` handler, idempotent by job id (delivery is at least once);
- event types it does not know, schema versions newer than it knows, and records that are
  not events are skipped (counted, reported on stderr), never fatal;
- offsets committed after the records before them were handled, partition by partition.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

# The schema version of BucketCreated this subscriber understands (contracts/schemas/).
KNOWN_VERSIONS = {"BucketCreated": 1}
# The gateway's other types: known, not needed here.
IGNORED = {"BucketRequested", "BucketProcessing", "BucketTransactionSigned", "BucketFailed"}


class Skip(Exception):
    """A record this subscriber does not handle; the reason is reported and it moves on."""


def read_event(value: bytes | None) -> dict[str, Any]:
    """The CloudEvent in a record value, or `Skip` when it is not one."""
    try:
        event = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Skip(f"malformed: not JSON ({exc})") from None
    if not isinstance(event, dict) or event.get("specversion") != "1.0":
        raise Skip("malformed: not a CloudEvents 1.0 document")
    if not isinstance(event.get("type"), str) or not isinstance(event.get("data"), dict):
        raise Skip("malformed: no type or data")
    return event


class Recorder:
    """Appends one JSON line per created bucket to a file: once per job, and only for the job
    that owns the name (the first BucketCreated of a name in log order, as in the gateway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.owners: dict[str, str] = {}  # bucket name -> job id
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    done = json.loads(line)
                    self.owners[done["bucket_name"]] = done["job_id"]
                except (ValueError, KeyError, TypeError):
                    continue  # a blank line, or one cut short by a crash

    def on_bucket_created(self, event: dict[str, Any], where: str) -> None:
        data = event["data"]
        job_id, name = data.get("job_id"), data.get("bucket_name")
        if not isinstance(job_id, str) or not isinstance(name, str):
            raise Skip("malformed: BucketCreated without job_id or bucket_name")
        owner = self.owners.get(name)
        if owner == job_id:  # a redelivery, or the gateway's own retry: done already
            return
        if owner is not None:
            raise Skip(f"{name} already belongs to job {owner}; the gateway fails job {job_id}")
        line = {
            "job_id": job_id,
            "bucket_name": name,
            "tx_hash": data.get("tx_hash"),
            "adopted": bool(data.get("adopted", False)),
            "event_id": event.get("id"),
            "time": event.get("time"),
            "at": where,
        }
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        self.owners[name] = job_id
        print(f"bucket created: {name} job={job_id} tx={line['tx_hash']}", flush=True)


def handle(recorder: Recorder, value: bytes | None, where: str) -> str:
    """ "handled" or "ignored"; raises `Skip` for what it cannot or should not read."""
    event = read_event(value)
    event_type = event["type"]
    if event_type in IGNORED:
        return "ignored"
    known = KNOWN_VERSIONS.get(event_type)
    if known is None:
        raise Skip(f"unknown type {event_type}")
    version = event.get("schemaversion", 1)
    if not isinstance(version, int) or version > known:
        raise Skip(f"{event_type} schema version {version!r} is newer than this subscriber")
    recorder.on_bucket_created(event, where)
    return "handled"


async def run(args: argparse.Namespace) -> Counter[str]:
    recorder = Recorder(Path(args.out))
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        enable_auto_commit=False,  # commit only what was handled
        auto_offset_reset=args.start,  # where a new group begins
        isolation_level="read_committed",
    )
    await consumer.start()
    print(f"subscribed to {args.topic} as group {args.group}", file=sys.stderr, flush=True)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    where = f"{record.topic}:{record.partition}:{record.offset}"
                    try:
                        counts[handle(recorder, record.value, where)] += 1
                    except Skip as skipped:
                        counts["skipped"] += 1
                        print(f"skipped {where}: {skipped}", file=sys.stderr, flush=True)
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="akave.bucket-events")
    parser.add_argument(
        "--group",
        default="akave-subscriber-example",
        help="your own consumer group; never the gateway's (akave-executor)",
    )
    parser.add_argument(
        "--start",
        choices=["earliest", "latest"],
        default="earliest",
        help="where a group without committed offsets begins",
    )
    parser.add_argument(
        "--out",
        default="buckets-created.jsonl",
        help="file to append one JSON line per created bucket to",
    )
    counts = asyncio.run(run(parser.parse_args()))
    summary = " ".join(f"{k}={counts[k]}" for k in ("handled", "ignored", "skipped"))
    print(f"stopped {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
