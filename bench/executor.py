"""Benchmark 3: the executor under a slow chain (2 s a transaction, 10% transient failures
retried after 10 s), against EXECUTOR_CONCURRENCY (4, 32, 256) and executor processes (1, 2).

The workload is written straight to the log (no API, no projector), as one burst:
- `tx` jobs: new names, each needs a create transaction;
- `adopt` jobs: the bucket is already on the (simulated) chain: a view, no transaction;
- `owned` jobs: an earlier job in the log already created the name: `bucket_exists`, no chain
  call at all.
Outcome events are read back from the log. Figures: transactions/s (the chain's own record of
every create call, `akave_sim.create_calls`), completed `tx` jobs/s over the window, and how
long the no-transaction jobs took: with a single signing key the transactions are a queue of
one, bounded by 1 / latency = 0.5/s, and the other jobs must not wait in it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from sqlalchemy import text

from bench import run
from bench.infra import Infra, Services, load
from services.executor.backends.simulated import SimulatedChain
from shared.events import BucketCreated, BucketRequested, decode, new_event
from shared.kafka import Appender, make_consumer, partition_for
from shared.settings import Settings

LATENCY_MS = 2000
FAILURE_RATE = 0.1
RETRY_DELAY_S = 10.0
SOURCE = "/akave-gateway/bench"


async def _append(appender: Appender, settings: Settings, data: Any) -> None:
    await appender.append(settings.bucket_events_topic, new_event(data, SOURCE))


async def _prepare(settings: Settings, names: dict[str, list[str]]) -> None:
    """Buckets already on the chain (adopt), and owners in the log (owned)."""
    chain = await SimulatedChain.open(settings)
    try:
        async with chain._engine.begin() as conn:
            for name in names["adopt"] + names["probe"]:
                await conn.execute(
                    text(
                        "INSERT INTO akave_sim.buckets (owner, name, id, tx_hash, created_at) "
                        "VALUES (:o, :n, :n, :n, 0)"
                    ),
                    {"o": settings.sim_owner, "n": name},
                )
    finally:
        await chain.close()
    appender = Appender(settings)
    try:
        for name in names["owned"]:
            job = uuid.uuid4()
            await _append(appender, settings, BucketRequested(job_id=job, bucket_name=name))
            await _append(
                appender,
                settings,
                BucketCreated(job_id=job, bucket_name=name, tx_hash="0x" + "ab" * 32),
            )
    finally:
        await appender.stop()


async def _measure(
    settings: Settings, names: dict[str, list[str]], window_s: float
) -> dict[str, Any]:
    topic = settings.bucket_events_topic
    appender = Appender(settings)
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await appender.partitions_for(topic)]
        consumer.assign(parts)
        seen: dict[str, tuple[float, str]] = {}
        jobs: dict[uuid.UUID, str] = {uuid.uuid4(): n for n in names["probe"]}
        loop = asyncio.get_running_loop()

        async def collect(until: float, wanted: set[str]) -> None:
            while loop.time() < until and not wanted <= seen.keys():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for record in records:
                        event = decode(record.value)
                        if event.type in ("BucketCreated", "BucketFailed"):
                            name = jobs.get(event.data.job_id)
                            if name is not None and name not in seen:
                                code = getattr(event.data, "error_code", None) or (
                                    "adopted"
                                    if getattr(event.data, "adopted", False)
                                    else "created"
                                )
                                seen[name] = (loop.time(), code)

        for p in parts:
            consumer.seek(p, 0)
        # The probes: one already-on-chain bucket per partition; once all three are settled,
        # every partition has an executor that has caught up.
        for job_id, name in jobs.items():
            await _append(appender, settings, BucketRequested(job_id=job_id, bucket_name=name))
        await collect(loop.time() + 120, set(names["probe"]))
        if not set(names["probe"]) <= seen.keys():
            raise RuntimeError("executors never became ready; see the bench logs")
        trios = itertools.zip_longest(names["tx"], names["adopt"], names["owned"])
        workload = [n for trio in trios for n in trio if n is not None]
        jobs.update({uuid.uuid4(): n for n in workload})
        started = loop.time()
        began_wall = time.time()
        await asyncio.gather(
            *(
                _append(appender, settings, BucketRequested(job_id=j, bucket_name=n))
                for j, n in jobs.items()
            )
        )
        await collect(started + window_s, set(workload) | {"never"})
        ended_wall = time.time()
    finally:
        await consumer.stop()
        await appender.stop()

    def latencies(kind: str) -> list[float]:
        return sorted(seen[n][0] - started for n in names[kind] if n in seen)

    def pct(values: list[float], q: float) -> float | None:
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    out: dict[str, Any] = {"window_s": window_s}
    for kind in ("tx", "adopt", "owned"):
        done = latencies(kind)
        codes: dict[str, int] = {}
        for n in names[kind]:
            if n in seen:
                codes[seen[n][1]] = codes.get(seen[n][1], 0) + 1
        out[kind] = {
            "jobs": len(names[kind]),
            "settled": len(done),
            "outcomes": codes,
            "p50_s": pct(done, 0.5),
            "p99_s": pct(done, 0.99),
            "max_s": done[-1] if done else None,
        }
    out["tx_jobs_per_s"] = out["tx"]["settled"] / window_s
    out["began_wall"], out["ended_wall"] = began_wall, ended_wall
    return out


async def _chain_calls(settings: Settings, began: float, ended: float) -> dict[str, int]:
    chain = await SimulatedChain.open(settings)
    try:
        async with chain._engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT outcome, count(*) FROM akave_sim.create_calls WHERE owner = :o "
                    "AND at >= to_timestamp(:b) AND at < to_timestamp(:e) GROUP BY outcome"
                ),
                {"o": settings.sim_owner, "b": began, "e": ended},
            )
            return {outcome: count for outcome, count in rows}
    finally:
        await chain.close()


def _wait_assigned(log_dir: Path, names: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [(log_dir / f"{n}.log").read_text(errors="replace") for n in names]
        if all("partitions assigned" in text_ for text_ in logs):
            return
        time.sleep(0.5)
    raise RuntimeError("executors never got partitions")


def one_run(
    infra: Infra, concurrency: int, processes: int, window_s: float, failure_rate: float
) -> dict[str, Any]:
    settings = infra.settings_for(
        sim_latency_ms=LATENCY_MS,
        sim_transient_failure_rate=failure_rate,
        retry_delay_s=RETRY_DELAY_S,
        executor_concurrency=concurrency,
        executor_session_timeout_ms=6000,
        log_level="INFO",
    )
    run.gateway(settings, "topics")
    tag = uuid.uuid4().hex[:6]
    n_tx = int(window_s * 1000 / LATENCY_MS) * 2 + 10  # more than one key can send in time
    n_free = 100
    names = {
        "tx": [f"tx-{tag}-{i}" for i in range(n_tx)],
        "adopt": [f"adopt-{tag}-{i}" for i in range(n_free)],
        "owned": [f"owned-{tag}-{i}" for i in range(n_free)],
        "probe": [],
    }
    i = 0
    while len(names["probe"]) < settings.topic_partitions:
        name = f"probe-{tag}-{i}"
        if partition_for(name, settings.topic_partitions) == len(names["probe"]):
            names["probe"].append(name)
        i += 1
    asyncio.run(_prepare(settings, names))
    with Services(settings, infra.log_dir) as services:
        executors = [f"executor-{tag}-{k}" for k in range(processes)]
        for name in executors:
            services.start(name, command="executor")
        _wait_assigned(infra.log_dir, executors)
        before = load()
        cpu0 = services.cpu()
        result = asyncio.run(_measure(settings, names, window_s))
        cpu1 = services.cpu()
        services.sample_rss()
        result["executor_peak_rss_mib"] = max(services.peaks.values())
    result["chain_calls"] = asyncio.run(
        _chain_calls(settings, result.pop("began_wall"), result.pop("ended_wall"))
    )
    mined = sum(v for k, v in result["chain_calls"].items() if k != "nonce_too_low")
    result["transactions_per_s"] = mined / window_s
    result["bound_per_s"] = 1000 / LATENCY_MS
    result.update(
        concurrency=concurrency,
        processes=processes,
        failure_rate=failure_rate,
        load=before,
        executor_cpu_share=sum(cpu1.get(n, 0) - cpu0.get(n, 0) for n in cpu0) / window_s,
    )
    return result


def bench(infra: Infra, *, quick: bool) -> dict[str, Any]:
    window = 16.0 if quick else 40.0
    configs = [(4, 1), (32, 1), (256, 1), (4, 2), (32, 2), (256, 2)]
    if quick:
        configs = [(4, 1), (256, 1), (32, 2)]
    runs = [one_run(infra, c, p, window, FAILURE_RATE) for c, p in configs]
    baseline = one_run(infra, 32, 1, window, 0.0)
    return {"window_s": window, "runs": runs, "no_failures": baseline}


def table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"executor, chain {LATENCY_MS} ms a transaction, {FAILURE_RATE:.0%} transient failures "
        f"retried after {RETRY_DELAY_S:g} s, burst written at t=0, window {result['window_s']:g} s",
        "| processes | concurrency | failures | transactions/s (bound 0.5) | tx jobs done/s "
        "| adopt p50/max s | owned p50/max s | nonce too low | executor CPU | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in [*result["runs"], result["no_failures"]]:

        def cell(kind: str, r: dict[str, Any] = r) -> str:
            k = r[kind]
            if k["p50_s"] is None:
                return f"0 of {k['jobs']} done"
            done = "" if k["settled"] == k["jobs"] else f" ({k['settled']}/{k['jobs']})"
            return f"{k['p50_s']:.2f} / {k['max_s']:.2f}{done}"

        lines.append(
            f"| {r['processes']} | {r['concurrency']} | {r['failure_rate']:.0%} "
            f"| {r['transactions_per_s']:.2f} | {r['tx_jobs_per_s']:.2f} | {cell('adopt')} "
            f"| {cell('owned')} | {r['chain_calls'].get('nonce_too_low', 0)} "
            f"| {r['executor_cpu_share']:.2f} | {r['load']} |"
        )
    return lines
