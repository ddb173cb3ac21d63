"""Replay benchmark: how fast `akave-gateway replay` rebuilds the read model from a big log.

    python -m bench.replay [--events 1000000 ...] [--partitions 6] [--before DIR]

Produces `--events` realistic events (a third as many jobs: requested, processing, then created
or, for one job in ten, failed; jobs interleaved in waves as a busy gateway writes them) into a
fresh topic, then measures on that topic, in this run:

1. a raw aiokafka consume of every record (the ceiling for anything reading this log in Python);
2. `akave-gateway replay` as a subprocess (what an operator runs), wall time from start to exit,
   and its peak RSS.

With several `--events` the topic grows from one size to the next (only the difference is
produced) and each size is measured in turn. With `--before DIR` each size is also replayed by
the code in the source tree DIR (e.g. an export of main), on the same topic in the same run.
A table of every figure ends the output.

It uses `KAFKA_BOOTSTRAP_SERVERS` when set, otherwise it starts a throwaway local broker, and
a database of its own on the machine's PostgreSQL (or on `DATABASE_URL`'s server), dropped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from localinfra.kafka import LocalKafka
from localinfra.postgres import create_database, drop_database, ensure_postgres
from localinfra.process import free_port
from services.projector.replay.bulk_copy import FETCH as BULK_FETCH
from services.projector.replay.bulk_copy import FETCH_RECORDS as BULK_RECORDS
from shared.events import (
    CONTENT_TYPE_HEADER,
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    EventData,
    encode,
    new_event,
)
from shared.kafka import ensure_topics, partition_for
from shared.migrations import migrate
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
WAVE = 1000  # jobs in flight at once in the generated log
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def generate(events: int, first_job: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs: every job's events in order, jobs interleaved in waves; the jobs
    numbered from `first_job`, so a topic can grow by further calls."""
    jobs = first_job + events // 3
    tick = 3 * first_job
    for start in range(first_job, jobs, WAVE):
        wave = [(uuid.uuid4(), f"bench-{n:08d}") for n in range(start, min(start + WAVE, jobs))]
        steps: list[list[EventData]] = [
            [BucketRequested(job_id=j, bucket_name=n) for j, n in wave],
            [BucketProcessing(job_id=j, bucket_name=n, attempt=1) for j, n in wave],
            [
                BucketFailed(
                    job_id=j, bucket_name=n, error="insufficient funds for gas",
                    error_code="insufficient_funds", attempts=1,
                )
                if i % 10 == 9
                else BucketCreated(
                    job_id=j, bucket_name=n, tx_hash=f"{i:064x}", bucket_id=f"{i:064x}",
                    bucket_created_at=1_767_225_600 + i,
                )
                for i, (j, n) in enumerate(wave, start)
            ],
        ]  # fmt: skip
        for step in steps:
            for data in step:
                tick += 1
                event = new_event(data, "/bench", time=T0 + timedelta(milliseconds=tick))
                yield data.bucket_name.encode(), encode(event)


async def produce(settings: Settings, events: int, first_job: int = 0) -> float:
    """Write the generated log with hand-made batches (much faster than one send per record),
    each job's events in order on its name's partition."""
    topic = settings.bucket_events_topic
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks=1,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    try:
        count = len(await producer.partitions_for(topic))
        batches = {p: producer.create_batch() for p in range(count)}
        sent = []
        headers = [CONTENT_TYPE_HEADER]
        for key, value in generate(events, first_job):
            p = partition_for(key.decode(), count)
            while batches[p].append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
        for p, batch in batches.items():
            sent.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return time.monotonic() - started


def _self_waiting_s() -> float:
    """Seconds this process has been runnable but waiting for a CPU."""
    return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9


async def raw_consume(settings: Settings) -> tuple[int, float, float, float]:
    """Every record of the topic with the replay's own fetch settings: (records, seconds,
    CPU seconds of this process, seconds it waited for a CPU)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **BULK_FETCH,
    )
    await consumer.start()
    try:
        topic = settings.bucket_events_topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        started, cpu, waited = time.monotonic(), time.process_time(), _self_waiting_s()
        for tp in partitions:
            consumer.seek(tp, 0)
        count = 0
        size = 0
        left = {tp for tp, end in ends.items() if end > 0}
        while left:
            for tp, records in (
                await consumer.getmany(timeout_ms=500, max_records=BULK_RECORDS)
            ).items():
                count += len(records)
                size += sum(len(r.value or b"") for r in records)
                if records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return (
            count,
            time.monotonic() - started,
            time.process_time() - cpu,
            _self_waiting_s() - waited,
        )
    finally:
        await consumer.stop()


def _tree_rss_kib(root: int, sched: dict[int, tuple[int, int]] | None = None) -> int:
    """Resident memory of `root` and all its descendants, from /proc (Linux). Records each
    one's nanoseconds on a CPU and waiting for one (runnable, `/proc/PID/schedstat`) in
    `sched`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            if sched is not None:
                on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
                sched[pid] = (int(on_cpu), int(waiting))
        except (OSError, ValueError):
            continue
    return total


def replay(
    settings: Settings, workers: int | None, tree: Path = REPO
) -> tuple[float, int, dict[str, object]]:
    """Run `akave-gateway replay` from the source tree `tree`; (seconds, peak RSS of its
    process tree in KiB, its `replay finished` line plus its CPU seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for name, value in settings.model_dump(mode="json").items():
        if value is not None and not name.startswith("akave_"):
            env[name.upper()] = str(value)
    env.update(PYTHONUNBUFFERED="1", LOG_FORMAT="json")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "replay",
                "--no-progress",
                *(["--workers", str(workers)] if workers else []),
            ],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        peak = 0
        sched: dict[int, tuple[int, int]] = {}
        while proc.poll() is None:
            peak = max(peak, _tree_rss_kib(proc.pid, sched))
            time.sleep(0.05)
        seconds = time.monotonic() - started
        stderr.seek(0)
        output = stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}):\n{output[-3000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    summary: dict[str, object] = {
        "cpu_s": round(cpu, 3),
        # Sampled every 50 ms, so the last 50 ms of each process are missing.
        "sched_on_cpu_s": round(sum(c for c, _ in sched.values()) / 1e9, 3),
        "sched_waiting_for_cpu_s": round(sum(w for _, w in sched.values()) / 1e9, 3),
    }
    for line in output.splitlines():
        if line.startswith("{"):
            doc = orjson.loads(line)
            if doc.get("message") == "replay finished":
                summary.update(doc)
    return seconds, peak, summary


async def bench(
    settings: Settings, sizes: list[int], workers: list[int | None], before: Path | None
) -> None:
    await ensure_topics(settings)
    table: list[str] = []
    produced = 0
    for size in sizes:
        events = size - size % 3  # whole jobs of three events each
        if events > produced:
            produced_in = await produce(settings, events - produced, produced // 3)
            print(f"produced {events - produced:,} events in {produced_in:.1f} s", flush=True)
            produced = events
        print(f"== {events:,} events", flush=True)
        table += await measure(settings, events, workers, before)
    print()
    print("| events | code | workers | replay wall | replay ev/s | raw consume ev/s | ratio "
          "| replay CPU | ev/CPU-s | peak RSS | load |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(table))


async def measure(
    settings: Settings, events: int, workers: list[int | None], before: Path | None
) -> list[str]:
    """One raw consume, then each replay, on the topic as it stands; the table's rows."""
    count, raw_s, raw_cpu, raw_waited = await raw_consume(settings)
    assert count == events, f"consumed {count} of {events}"
    raw_rate = count / raw_s
    print(
        f"raw aiokafka consume: {count:,} records in {raw_s:.2f} s = {raw_rate:,.0f} ev/s "
        f"(CPU {raw_cpu:.2f} s = {count / raw_cpu:,.0f} ev/CPU-s; "
        f"{raw_waited:.2f} s runnable but waiting for a CPU)"
    )
    rows = []
    trees = [("before", before)] if before is not None else []
    for code, tree in [*trees, ("after", REPO)]:
        for count_workers in workers:
            replay_s, rss_kib, summary = replay(settings, count_workers, tree)
            rate = events / replay_s
            cpu = float(str(summary["cpu_s"]))
            label = f"replay ({code}), {count_workers or 'default'} workers"
            print(
                f"{label} (whole command): {replay_s:.2f} s = {rate:,.0f} ev/s "
                f"(CPU {cpu:.2f} s = {events / cpu:,.0f} ev/CPU-s)"
            )
            phases = {
                k: v
                for k, v in summary.items()
                if (k.endswith("_s") and not k.startswith("sched_"))
                or k in ("jobs", "repeats_dropped", "names_taken")
            }
            print(f"  phases: {phases}")
            print(
                f"  its processes together: {summary['sched_on_cpu_s']} s on a CPU, "
                f"{summary['sched_waiting_for_cpu_s']} s runnable but waiting for a CPU"
            )
            print(
                f"  ratio replay / raw consume: {rate / raw_rate:.2f} wall, "
                f"{(events / cpu) / (count / raw_cpu):.2f} CPU"
            )
            print(f"  peak RSS (all its processes together): {rss_kib / 1024:.0f} MiB", flush=True)
            load = os.getloadavg()[0]
            rows.append(
                f"| {events:,} | {code} | {count_workers or 'default'} | {replay_s:.1f} s "
                f"| {rate:,.0f} | {raw_rate:,.0f} | {rate / raw_rate:.2f} | {cpu:.1f} s "
                f"| {events / cpu:,.0f} | {rss_kib / 1024:,.0f} MiB | {load:.1f} |"
            )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument(
        "--events",
        type=int,
        action="append",
        help="events in the topic; repeat to grow it and measure at each size (default 1000000)",
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        help="replay --workers; repeat to run the replay once per value (default: its default)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="also replay with the code of this source tree (e.g. an export of main)",
    )
    args = parser.parse_args()

    tag = f"{os.getpid()}"
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalKafka(
            REPO, name=f"bench-replay-{tag}", port=free_port(), controller_port=free_port(),
            fresh=True,
        )  # fmt: skip
        broker.start()
        bootstrap = broker.bootstrap_servers
    url = create_database(ensure_postgres(os.environ.get("DATABASE_URL")), f"akave_bench_{tag}")
    try:
        settings = Settings(
            _env_file=None,
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            bucket_events_topic=f"bench-{tag}.bucket-events",
            dead_letter_topic=f"bench-{tag}.bucket-events.dlq",
            topic_partitions=args.partitions,
        )
        migrate(settings)
        sizes = sorted(args.events or [1_000_000])
        asyncio.run(bench(settings, sizes, args.workers or [None], args.before))
    finally:
        drop_database(url)
        if broker is not None:
            broker.stop()
            shutil.rmtree(broker.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
