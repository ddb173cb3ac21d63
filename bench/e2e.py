"""Benchmark 2: POST -> job visible as completed, at a fixed arrival rate, on a chain that is
not the limit.

The whole gateway runs (api, executor with AKAVE_BACKEND=evm, projector as processes) on an
anvil of each rate's own with our Storage contract, 1 s blocks of 10x mainnet's gas (so a
block holds about 1,500 creates), signing with a pool of KEYS of anvil's public dev keys
(localinfra/dev_keys.py: public test data) and CHAIN_MAX_IN_FLIGHT=IN_FLIGHT each, so neither
block space nor the keys' nonces is what limits it (benchmark 4, bench/chain.py, measures
those). Not an automining chain: a block per transaction makes the watcher's per-block batch
(a receipt per transaction in flight) cost O(rate x in flight), a load no real chain makes
(docs/benchmarks.md, section 2). A fresh chain per rate: a rate that leaves transactions in
flight must not leave the next one their nonces. The open-loop generator
(bench.loadgen) posts at `rate` per second and watches `bucket_jobs` for each accepted job; the
latency runs from the request's due time to the first poll (every 5 ms) that sees the row
`completed`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from bench import run
from bench.dev_chain import Chain, key_pool_file, local_chain
from bench.infra import Infra, Services, cpu_seconds, load
from shared.events import decode
from shared.kafka import make_consumer
from shared.settings import Settings

SIGNED = "BucketTransactionSigned"
KEYS = 4
IN_FLIGHT = 256
BLOCK_TIME_S = 1.0
BLOCK_GAS = 300_000_000


async def stages(settings: Settings, jobs: dict[str, list[float]]) -> dict[str, Any]:
    """Split each completed job's latency by the log's record times (producer clocks, ms):
    due -> request appended (api), -> processing appended and -> created appended (executor),
    -> seen completed in bucket_jobs (projector, plus at most one poll). Where the job's
    first transaction was recorded (BucketTransactionSigned, the evm backend), the executor's
    part splits further: processing -> signed (waiting for a slot, signing, the record's
    append) and signed -> created (the chain, and reading its receipt)."""
    topic = settings.bucket_events_topic
    consumer = make_consumer(settings)
    await consumer.start()
    times: dict[str, dict[str, float]] = {}
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, 0)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode(record.value)
                    job = times.setdefault(str(event.data.job_id), {})
                    if event.type == SIGNED:  # the first attempt; replacements come later
                        job.setdefault(event.type, record.timestamp / 1000)
                    else:
                        job[event.type] = record.timestamp / 1000
    finally:
        await consumer.stop()
    steps: dict[str, list[float]] = {
        "api": [], "executor_pickup": [], "executor_chain": [], "projector": [],
        "executor_sign": [], "chain": [],
    }  # fmt: skip
    for job_id, (due, seen) in jobs.items():
        t = times.get(job_id, {})
        if {"BucketRequested", "BucketProcessing", "BucketCreated"} <= t.keys():
            steps["api"].append(t["BucketRequested"] - due)
            steps["executor_pickup"].append(t["BucketProcessing"] - t["BucketRequested"])
            steps["executor_chain"].append(t["BucketCreated"] - t["BucketProcessing"])
            steps["projector"].append(seen - t["BucketCreated"])
            if SIGNED in t:
                steps["executor_sign"].append(t[SIGNED] - t["BucketProcessing"])
                steps["chain"].append(t["BucketCreated"] - t[SIGNED])
    out: dict[str, Any] = {}
    for step, values in steps.items():
        values.sort()
        if values:
            out[step] = {
                "p50_ms": 1000 * values[len(values) // 2],
                "p99_ms": 1000 * values[int(len(values) * 0.99)],
            }
    return out


def _kafka_cpu(infra: Infra) -> float:
    pid = infra.kafka.pid
    return cpu_seconds(pid) if pid else 0.0


def bench(
    infra: Infra,
    *,
    quick: bool,
    rates: tuple[float, ...] = (50.0, 100.0, 200.0),
    concurrency: int = 32,
) -> dict[str, Any]:
    """One run per arrival rate, each on a fresh topic and a fresh chain (so no backlog and no
    transaction in flight carries over)."""
    runs = []
    with key_pool_file(KEYS) as pool:
        for r in rates:
            with local_chain(block_time=BLOCK_TIME_S, gas_limit=BLOCK_GAS) as chain:
                runs.append(
                    one_rate(infra, chain, pool, quick=quick, rate=r, concurrency=concurrency)
                )
    return {"runs": runs}


def one_rate(
    infra: Infra, chain: Chain, pool: Path, *, quick: bool, rate: float, concurrency: int
) -> dict[str, Any]:
    seconds = 5.0 if quick else 20.0
    settings = infra.settings_for(
        executor_concurrency=concurrency,
        akave_backend="evm",
        chain_rpc_url=chain.anvil.rpc_url,
        chain_contract_address=chain.contract,
        chain_id=chain.chain_id,
        chain_key_pool_file=pool,
        chain_max_in_flight=IN_FLIGHT,
    )
    run.gateway(settings, "topics")
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with Services(settings, infra.log_dir) as services:
        for name in ("projector", "executor", "api"):
            services.start(name)
        services.wait_healthy()
        run.open_loop(services.base_url + "/buckets", 20, 2, "e2ewarm", complete_dsn=dsn)
        cpu0 = services.cpu()
        kafka0 = _kafka_cpu(infra)
        before = load()
        figures = run.open_loop(
            services.base_url + "/buckets", rate, seconds, "e2e", complete_dsn=dsn, dump_jobs=True
        )
        figures["stages"] = asyncio.run(stages(settings, figures.pop("jobs", {})))
        cpu1 = services.cpu()
        kafka1 = _kafka_cpu(infra)
        services.sample_rss()
        figures["load_before"] = before
        figures["load_after"] = load()
        figures["executor_concurrency"] = concurrency
        settled = max(1, figures.get("completed", 0) + figures.get("failed", 0))
        figures["cpu_ms_per_job"] = {
            name: 1000 * (cpu1[name] - cpu0[name]) / settled for name in cpu1 if name in cpu0
        }
        figures["cpu_ms_per_job"]["kafka"] = 1000 * (kafka1 - kafka0) / settled
        figures["peak_rss_mib"] = dict(services.peaks)
    return figures


def table(result: dict[str, Any]) -> list[str]:
    first = result["runs"][0]
    lines = [
        f"end to end, {first['requests'] / first['offered_rate']:g} s of arrivals per rate, "
        f"anvil with {BLOCK_TIME_S:g} s blocks of {BLOCK_GAS // 10**6}M gas, "
        f"{KEYS} keys x {IN_FLIGHT} in flight, "
        f"EXECUTOR_CONCURRENCY={first['executor_concurrency']}",
        "| jobs/s | jobs | completed | unseen | e2e p50 / p95 / p99 / max ms "
        "| accept p50 / p99 ms | stages p50 (p99) ms: api, executor pickup, executor chain, "
        "projector | CPU ms per job: api, executor, projector, kafka | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        e2e, acc, per_job = r["end_to_end"], r["accept"], r.get("cpu_ms_per_job", {})
        cpu = ", ".join(
            f"{per_job.get(n, 0):.2f}" for n in ("api", "executor", "projector", "kafka")
        )
        stage = r.get("stages", {})
        stages = ", ".join(
            f"{stage[k]['p50_ms']:.0f} ({stage[k]['p99_ms']:.0f})" if k in stage else "-"
            for k in ("api", "executor_pickup", "executor_chain", "projector")
        )
        lines.append(
            f"| {r['offered_rate']:g} | {r['requests']} | {r['completed']} | {r['never_seen']} "
            f"| {e2e.get('p50_ms', 0):.0f} / {e2e.get('p95_ms', 0):.0f} / "
            f"{e2e.get('p99_ms', 0):.0f} / {e2e.get('max_ms', 0):.0f} "
            f"| {acc['p50_ms']:.1f} / {acc['p99_ms']:.1f} | {stages} | {cpu} | {r['load_before']} |"
        )
    return lines
