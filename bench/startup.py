"""Executor start and takeover against the log's length, with and without snapshots.

    python -m bench.startup [--events 100000 1000000 5000000] [--quick]

For each size, a fresh topic is filled with that many events of finished jobs
(`bench.finished_log`: four events a job, names unique), on a fresh anvil with our contract
and one of anvil's public dev keys (localinfra/dev_keys.py: public test data). Then, in this
run, for the executor as a real process (`AKAVE_BACKEND=evm`):

- **start**: process start -> a new job's `BucketCreated` in the log (the job's request is
  appended right after the process starts);
- **takeover**: two executors of one key pool (active/standby by the signer fence), the
  active one SIGKILLed once live and the standby reporting `akave_executor_standby 1` -> the
  next new job's `BucketCreated` (its request appended right after the kill);

each **without** a snapshot (none in the store, checked, and none written while it runs: the
fold from offset 0 that every start did before snapshots) and **with** one. In this order:

1. start without (no snapshot); SIGKILLed afterwards, so it writes none;
2. first start with snapshots on and none stored yet (folds from offset 0, writing one every
   EXECUTOR_SNAPSHOT_RECORDS), stopped cleanly: this is what leaves the snapshots;
3. start with (every partition's snapshot stored, checked; how many records lie after them is
   printed as `to_read_with`), stopped cleanly;
4. takeover with (the standby restores what the killed one last wrote);
5. takeover without: the active one restores a snapshot, then every snapshot is dropped (and
   checked gone) while the standby waits, so the standby folds from offset 0.

The executor's peak RSS (VmHWM) is taken once it is live after each start. Ratios are against
the smallest size, measured in the same run; the 1-minute load average before and after each
size is printed with it. Targets (issue 12): start and takeover <= 5 s at every size with a
snapshot; executor RSS flat across sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import run
from bench.dev_chain import Chain, key_pool_file, local_chain
from bench.finished_log import EVENTS_PER_JOB, produce
from bench.infra import OUT, Infra, Services, free_port, infra, load, peak_rss_mib
from services.executor.snapshot_store import SnapshotStore
from shared.db import make_engine
from shared.events import BucketRequested, decode, new_event
from shared.kafka import Appender, partition_for
from shared.settings import Settings

NO_SNAPSHOTS = {"EXECUTOR_SNAPSHOT_INTERVAL_S": "1e9", "EXECUTOR_SNAPSHOT_RECORDS": "1000000000"}
STANDBY_TIMEOUT_S = 120.0


async def drop_snapshots(settings: Settings) -> None:
    engine: AsyncEngine = make_engine(settings, pool_size=1)
    try:
        await SnapshotStore(engine, settings.bucket_events_topic).drop()
    finally:
        await engine.dispose()


async def records_after_snapshots(settings: Settings) -> dict[int, int | None]:
    """Per partition: how many records lie between its stored snapshot and the log's end, or
    None when it has no snapshot."""
    topic = settings.bucket_events_topic
    tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    engine: AsyncEngine = make_engine(settings, pool_size=1)
    try:
        ends = await consumer.end_offsets(tps)
        store = SnapshotStore(engine, topic)
        out: dict[int, int | None] = {}
        for tp in tps:
            stored = await store.load(tp.partition)
            out[tp.partition] = None if stored is None else ends[tp] - stored.position
        return out
    finally:
        await engine.dispose()
        await consumer.stop()


async def group_coordinator_up(settings: Settings) -> None:
    """Commit an offset for a throwaway group: on a fresh broker the first group creates
    `__consumer_offsets`, which must not be counted in the first executor's start."""
    tp = TopicPartition(settings.bucket_events_topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.executor_group_id}-warm-up",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()


def require_snapshots(settings: Settings, present: bool) -> dict[int, int | None]:
    """The store's state, or an error if it is not the one the next measurement needs."""
    state = asyncio.run(records_after_snapshots(settings))
    missing = [p for p, behind in state.items() if behind is None]
    if present and missing:
        raise RuntimeError(f"no snapshot for partitions {missing}: {state}")
    if not present and len(missing) != len(state):
        raise RuntimeError(f"snapshots left where none may be: {state}")
    return state


class Probe:
    """A consumer of the partition a new job's name goes to, positioned at its end, and an
    appender: started before the moment measured, so their start-up is not in the figure."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = f"fresh-{uuid.uuid4().hex[:12]}"
        self.job = uuid.uuid4()
        self.tp = TopicPartition(
            settings.bucket_events_topic, partition_for(self.name, settings.topic_partitions)
        )
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
        self.appender = Appender(settings)

    async def __aenter__(self) -> Probe:
        await self.consumer.start()
        self.consumer.assign([self.tp])
        end = (await self.consumer.end_offsets([self.tp]))[self.tp]
        self.consumer.seek(self.tp, end)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.appender.stop()
        await self.consumer.stop()

    async def created(self, timeout: float = 1800) -> float:
        """Append the new job's request; the monotonic time its `BucketCreated` is read."""
        data = BucketRequested(job_id=self.job, bucket_name=self.name)
        await self.appender.append(self.settings.bucket_events_topic, new_event(data, "/b"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await self.consumer.getmany(self.tp, timeout_ms=100)).values():
                for record in records:
                    event = decode(record.value)
                    if event.job_id == self.job and event.type in ("BucketCreated", "BucketFailed"):
                        assert event.type == "BucketCreated", event
                        return time.monotonic()
        raise TimeoutError(f"job {self.job} not created in {timeout:g} s")


async def new_job_created(settings: Settings) -> float:
    async with Probe(settings) as probe:
        return await probe.created()


async def created_after_kill(settings: Settings, active: subprocess.Popen[bytes]) -> float:
    """SIGKILL `active`, append a new job at once; seconds from the kill to its creation."""
    async with Probe(settings) as probe:
        active.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        created = await probe.created()
        await asyncio.to_thread(active.wait)
        return created - killed


def executor_env(port: int, snapshots: bool) -> dict[str, str]:
    return {"EXECUTOR_METRICS_PORT": str(port), **({} if snapshots else NO_SNAPSHOTS)}


def wait_standby(services: Services, name: str, port: int) -> None:
    """Until the executor `name` serves `akave_executor_standby 1`: waiting for the fence."""
    deadline = time.monotonic() + STANDBY_TIMEOUT_S
    while time.monotonic() < deadline:
        if services.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited with {services.procs[name].returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                if "akave_executor_standby 1.0" in answer.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} never became a standby")


def kill(services: Services, name: str) -> None:
    """SIGKILL: no snapshot written at the stop."""
    proc = services.procs.pop(name)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def timed_start(
    infra_: Infra, settings: Settings, snapshots: bool, keep: bool
) -> tuple[float, float]:
    """Seconds from the executor's process start to a new job's creation, and its peak RSS
    (MiB) then. `keep`: stop it cleanly (writing its snapshots) instead of SIGKILLing it."""
    with Services(settings, infra_.log_dir) as services:
        began = time.monotonic()
        services.start("executor", **executor_env(free_port(), snapshots))
        created = asyncio.run(new_job_created(settings))
        rss = peak_rss_mib(services.procs["executor"].pid)
        if not keep:
            kill(services, "executor")
    return round(created - began, 2), round(rss, 1)


def timed_takeover(infra_: Infra, settings: Settings, snapshots: bool) -> float:
    """Seconds from SIGKILLing the live active executor to the standby's creation of a new
    job. Without snapshots, they are dropped while the standby waits."""
    with Services(settings, infra_.log_dir) as services:
        services.start("executor", **executor_env(free_port(), snapshots))
        asyncio.run(new_job_created(settings))  # the first one is live
        port = free_port()
        services.start("standby", "executor", **executor_env(port, snapshots))
        wait_standby(services, "standby", port)
        if not snapshots:
            asyncio.run(drop_snapshots(settings))
        require_snapshots(settings, present=snapshots)
        seconds = asyncio.run(created_after_kill(settings, services.procs.pop("executor")))
        if not snapshots:
            kill(services, "standby")  # its clean stop would write a snapshot of the whole log
    return round(seconds, 2)


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
    asyncio.run(group_coordinator_up(settings))
    out: dict[str, Any] = {
        "events": events,
        "at": datetime.now(UTC).strftime("%H:%M:%S UTC"),
        "load_before": float(load().split()[0]),
    }
    began = time.monotonic()
    out["fill_s"] = round(
        asyncio.run(produce(settings, f"log{events}", 0, events // EVENTS_PER_JOB)), 1
    )
    require_snapshots(settings, present=False)
    out["start_without_s"], out["rss_without_mib"] = timed_start(infra_, settings, False, False)
    require_snapshots(settings, present=False)
    out["first_start_s"], out["rss_first_mib"] = timed_start(infra_, settings, True, True)
    behind = require_snapshots(settings, present=True)
    out["to_read_with"] = sum(v or 0 for v in behind.values())
    out["start_with_s"], out["rss_with_mib"] = timed_start(infra_, settings, True, True)
    out["takeover_with_s"] = timed_takeover(infra_, settings, True)
    out["takeover_without_s"] = timed_takeover(infra_, settings, False)
    out["measure_s"] = round(time.monotonic() - began, 1)
    out["load_after"] = float(load().split()[0])
    print(json.dumps(out), flush=True)
    return out


def _times(value: float, base: float) -> str:
    return f"{value} s ({value / base:.2f}x)"


def table(rows: list[dict[str, Any]]) -> list[str]:
    base = rows[0]
    lines = [
        "| events | fill | start without | first start, snapshots on | start with (x smallest) "
        "| takeover without | takeover with (x smallest) | RSS without | RSS first start "
        "| RSS with (x smallest) | load before → after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = r["rss_with_mib"] / base["rss_with_mib"]
        lines.append(
            f"| {r['events']:,} | {r['fill_s']} s | {r['start_without_s']} s "
            f"| {r['first_start_s']} s | {_times(r['start_with_s'], base['start_with_s'])} "
            f"| {r['takeover_without_s']} s "
            f"| {_times(r['takeover_with_s'], base['takeover_with_s'])} "
            f"| {r['rss_without_mib']} MiB | {r['rss_first_mib']} MiB "
            f"| {r['rss_with_mib']} MiB ({ratio:.2f}x) "
            f"| {r['load_before']} → {r['load_after']} |"
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
    began = time.monotonic()
    with infra() as infra_, key_pool_file(1) as pool:
        for events in sizes:
            with local_chain(block_time=None) as chain:
                rows.append(measure(infra_, chain, pool, events))
    lines = table(rows)
    lines.append(f"whole run: {time.monotonic() - began:.0f} s")
    print("\n".join(lines))
    (OUT / "startup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
