"""Executor start and takeover against the log's length, with and without snapshots.

    python -m bench.startup [--events 100000 1000000 5000000] [--quick]

For each size, a fresh topic is filled with that many events of finished jobs
(`bench.finished_log`: four events a job, names unique), on a fresh anvil with our contract
and one of anvil's public dev keys (localinfra/dev_keys.py: public test data). Then, in this
run, for the executor as a real process (`AKAVE_BACKEND=evm`):

- **start**: process start -> a new job's `BucketCreated` in the log (the job's request is
  appended right after the process starts);
- **takeover**: two executors of one key pool (active/standby by the signer fence), the
  active one SIGKILLed once live -> the next new job's `BucketCreated`;

each **without** a snapshot (dropped before, and none written during: the fold from offset 0
that every start did before snapshots) and **with** one (written as the executor runs and
when it stops). The executor's peak RSS (VmHWM) is taken once it is live. Ratios are against
the smallest size, measured in the same run. Targets (issue 12): start and takeover <= 5 s at
every size with a snapshot; executor RSS flat across sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import run
from bench.dev_chain import Chain, key_pool_file, local_chain
from bench.finished_log import EVENTS_PER_JOB, produce
from bench.infra import OUT, Infra, Services, free_port, infra, peak_rss_mib
from services.executor.snapshot_store import SnapshotStore
from shared.db import make_engine
from shared.events import BucketRequested, decode, new_event
from shared.kafka import Appender, partition_for
from shared.settings import Settings

NO_SNAPSHOTS = {"EXECUTOR_SNAPSHOT_INTERVAL_S": "1e9", "EXECUTOR_SNAPSHOT_RECORDS": "1000000000"}


async def drop_snapshots(settings: Settings) -> None:
    engine: AsyncEngine = make_engine(settings, pool_size=1)
    try:
        await SnapshotStore(engine, settings.bucket_events_topic).drop()
    finally:
        await engine.dispose()


async def new_job_created(settings: Settings, timeout: float = 900) -> float:
    """Append one new request; the monotonic time its `BucketCreated` is read from the log."""
    name = f"fresh-{uuid.uuid4().hex[:12]}"
    job = uuid.uuid4()
    topic = settings.bucket_events_topic
    tp = TopicPartition(topic, partition_for(name, settings.topic_partitions))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    appender = Appender(settings)
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, end)
        await appender.append(topic, new_event(BucketRequested(job_id=job, bucket_name=name), "/b"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=100)).values():
                for record in records:
                    event = decode(record.value)
                    if event.job_id == job and event.type in ("BucketCreated", "BucketFailed"):
                        assert event.type == "BucketCreated", event
                        return time.monotonic()
        raise TimeoutError(f"job {job} not created in {timeout:g} s")
    finally:
        await appender.stop()
        await consumer.stop()


def executor_env(snapshots: bool) -> dict[str, str]:
    return {"EXECUTOR_METRICS_PORT": str(free_port()), **({} if snapshots else NO_SNAPSHOTS)}


def measure(infra_: Infra, chain: Chain, pool: Any, events: int) -> dict[str, Any]:
    settings = infra_.settings_for(
        akave_backend="evm",
        chain_rpc_url=chain.anvil.rpc_url,
        chain_contract_address=chain.contract,
        chain_id=chain.chain_id,
        chain_key_pool_file=pool,
        executor_session_timeout_ms=6000,
    )
    run.gateway(settings, "topics")
    fill_s = asyncio.run(produce(settings, f"log{events}", 0, events // EVENTS_PER_JOB))
    out: dict[str, Any] = {"events": events, "fill_s": round(fill_s, 1)}
    for snapshots in (False, True):
        label = "with" if snapshots else "without"
        if not snapshots:
            asyncio.run(drop_snapshots(settings))
        with Services(settings, infra_.log_dir) as services:
            began = time.monotonic()
            services.start("executor", **executor_env(snapshots))
            created = asyncio.run(new_job_created(settings))
            out[f"start_{label}_s"] = round(created - began, 2)
            out[f"rss_{label}_mib"] = round(peak_rss_mib(services.procs["executor"].pid), 1)
        # the clean stop above wrote snapshots (with) or none (without: dropped again here)
        if not snapshots:
            asyncio.run(drop_snapshots(settings))
        with Services(settings, infra_.log_dir) as services:
            services.start("executor", **executor_env(snapshots))
            asyncio.run(new_job_created(settings))  # the first one is live
            services.start("standby", "executor", **executor_env(snapshots))
            time.sleep(3)  # the standby is up and waiting for the fence
            if not snapshots:
                asyncio.run(drop_snapshots(settings))
            active = services.procs.pop("executor")
            active.send_signal(signal.SIGKILL)
            active.wait()
            killed = time.monotonic()
            created = asyncio.run(new_job_created(settings))
            out[f"takeover_{label}_s"] = round(created - killed, 2)
    print(json.dumps(out), flush=True)
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    base = rows[0]
    lines = [
        "| events | start without | start with | takeover without | takeover with "
        "| RSS without | RSS with (x smallest) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = r["rss_with_mib"] / base["rss_with_mib"]
        lines.append(
            f"| {r['events']:,} | {r['start_without_s']} s | {r['start_with_s']} s "
            f"| {r['takeover_without_s']} s | {r['takeover_with_s']} s "
            f"| {r['rss_without_mib']} MiB | {r['rss_with_mib']} MiB ({ratio:.2f}x) |"
        )
    worst = max(max(r["start_with_s"], r["takeover_with_s"]) for r in rows)
    lines.append("")
    lines.append(f"with snapshots, slowest start or takeover: {worst} s (target <= 5 s)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--quick", action="store_true", help="20k and 100k events")
    args = parser.parse_args()
    sizes = [20_000, 100_000] if args.quick else sorted(args.events)
    rows = []
    with infra() as infra_, key_pool_file(1) as pool:
        for events in sizes:
            with local_chain(block_time=None) as chain:
                rows.append(measure(infra_, chain, pool, events))
    lines = table(rows)
    print("\n".join(lines))
    (OUT / "startup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
