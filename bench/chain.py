"""Benchmark 4: settling on a real EVM chain. POST -> completed at fixed arrival rates, against
CHAIN_MAX_IN_FLIGHT (1 = the serial way, the baseline of the same run; 16, 64, 256) and key
pools of 1, 2 and 4 keys at 16; p99 POST -> completed at half the maximum rate; CPU per job.

The chain is anvil (2 s blocks, 30M block gas) with our Storage contract; the gateway runs as
its processes (api, executor with AKAVE_BACKEND=evm, projector) on the bench's Kafka broker and
database. Signing keys are anvil's dev accounts (localinfra/dev_keys.py: PUBLIC TEST DATA, not
secrets), funded on the chain and handed to the executor as a CHAIN_KEY_POOL_FILE (mode 0600,
removed afterwards; a one-key run is a pool of one).

Each run offers a fixed rate above what its slots allow (keys x in-flight / block time, so a
backlog forms) and counts, from the loadgen's own clock, completed creates per second from the
first request's due time to the last completion. Beside each figure: the blocks of the run
(our transactions per block, the block gas their gas limits take), the executor's CPU share of
one core, the API's accept rate and the projector's lag, which name what limits it.

`python -m bench.chain [--quick]` runs it alone; `python -m bench --only chain` in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import run
from bench.dev_chain import BLOCK_GAS, BLOCK_TIME_S, POOL, Chain, key_pool_file, local_chain
from bench.e2e import stages
from bench.infra import OUT, Infra, Services, cpu_seconds, infra, load, tree
from localinfra.anvil import LocalAnvil
from services.executor.backends.evm import EvmBackend
from services.executor.chain.records import Attempt
from shared.settings import Settings

MAX_OFFERED = 100.0  # jobs/s: past this the 2 shared cores, not the chain, decide
P99_TARGET_S = 2 * BLOCK_TIME_S + 1


def slots_per_s(in_flight: int, keys: int) -> float:
    """What the lanes allow: each key's in-flight slots once per block."""
    return keys * in_flight / BLOCK_TIME_S


def target(in_flight: int, keys: int) -> tuple[float, str]:
    """The issue's target for a run (completed creates/s) and how it reads."""
    if in_flight == 1:
        return 0.0, "baseline"
    if in_flight >= 256:
        return 50.0, "≥ 50/s and ≥ 100x serial"
    if keys == 4:
        return 24.0, "≥ 24/s"
    bound = 0.8 * slots_per_s(in_flight, keys)
    return bound, f"≥ {bound:.1f}/s"


def cpu_wait_s(pid: int) -> float:
    """Seconds `pid` and its descendants were runnable but waiting for a CPU (schedstat)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{p}/schedstat").read_text().split()[1])
    return total / 1e9


def _blocks(anvil: LocalAnvil, first: int, last: int, ours: set[str]) -> dict[str, Any]:
    """Our transactions per block and the block gas used (anvil packs a block by gas used,
    not by the transactions' gas limits), and the base fee they paid at the most."""
    per_block: list[tuple[int, int, int]] = []  # (our txs, gas used, base fee)
    for number in range(first, last + 1):
        block = anvil.rpc("eth_getBlockByNumber", hex(number), True)
        mine = sum(1 for tx in block["transactions"] if tx["from"].lower() in ours)
        fee = int(block.get("baseFeePerGas", "0x0"), 16)
        per_block.append((mine, int(block["gasUsed"], 16), fee))
    with_ours = [i for i, (mine, _u, _f) in enumerate(per_block) if mine]
    mined = sum(mine for mine, _u, _f in per_block)
    busy = per_block[with_ours[0] : with_ours[-1] + 1] if with_ours else []
    span = (with_ours[-1] - with_ours[0] + 1) if with_ours else 0
    return {
        "blocks": len(per_block),
        "our_txs": mined,
        "max_our_txs_per_block": max((m for m, _u, _f in per_block), default=0),
        "mean_our_txs_per_block": mined / len(busy) if busy else 0.0,
        "max_gas_used_share": max((u for _m, u, _f in per_block), default=0) / BLOCK_GAS,
        "gas_per_tx": sum(u for _m, u, _f in per_block) / mined if mined else 0.0,
        "max_base_fee_gwei": max((f for _m, _u, f in per_block), default=0) / 1e9,
        "mined_per_s": mined / (span * BLOCK_TIME_S) if span else 0.0,
    }


def _throughput(jobs: dict[str, list[float]]) -> tuple[float, float]:
    """Completed creates/s: (steady, with ramp-up). Steady: completions after the first
    block's worth (those seen within half a block time of the first) over the time from the
    first completion to the last; with a backlog that is the settle rate, whatever the run's
    length. With ramp-up: all completions from the first request's due time to the last."""
    if not jobs:
        return 0.0, 0.0
    seen = sorted(s for _due, s in jobs.values())
    first_due = min(due for due, _seen in jobs.values())
    ramp = len(seen) / max(seen[-1] - first_due, 1e-9)
    first_block = sum(1 for s in seen if s - seen[0] < BLOCK_TIME_S / 2)
    span = seen[-1] - seen[0]
    steady = (len(seen) - first_block) / span if span >= BLOCK_TIME_S else ramp
    return steady, ramp


def _limit(r: dict[str, Any]) -> str:
    """What the measurements say held this run back (first match, most specific first)."""
    blocks, stage = r["blocks"], r.get("stages", {})
    if blocks["max_gas_used_share"] >= 0.9:
        return f"block gas ({blocks['max_gas_used_share']:.0%} of a block used)"
    slots = r["in_flight"] * r["keys"]
    if blocks["mined_per_s"] >= 0.8 * slots_per_s(r["in_flight"], r["keys"]):
        return f"in-flight slots ({slots} a block: the setting, as designed)"
    busy = r["executor_cpu_share"] + r["executor_cpu_wait_share"]
    if busy >= 0.85:  # one event loop: on a CPU or waiting for one nearly all the run
        return (
            f"executor CPU ({r['executor_cpu_share']:.0%} on a core, "
            f"{r['executor_cpu_wait_share']:.0%} waiting for one)"
        )
    if r["achieved_rate"] < 0.9 * r["offered_rate"]:
        return f"API accept ({r['achieved_rate']:.0f} of {r['offered_rate']:g}/s answered)"
    if stage.get("projector", {}).get("p99_ms", 0) > 1000 * BLOCK_TIME_S:
        return f"projector lag (p99 {stage['projector']['p99_ms'] / 1000:.1f} s)"
    return (
        f"none of these: {blocks['mean_our_txs_per_block']:.0f} of {slots} slots a block on "
        f"average; see the stages"
    )


def one_run(
    bench_infra: Infra,
    chain: Chain,
    *,
    in_flight: int,
    keys: int,
    rate: float,
    seconds: float,
    drain_s: float,
) -> dict[str, Any]:
    with key_pool_file(keys) as pool:
        settings = bench_infra.settings_for(
            akave_backend="evm",
            chain_rpc_url=chain.anvil.rpc_url,
            chain_contract_address=chain.contract,
            chain_id=chain.chain_id,
            chain_key_pool_file=pool,
            chain_max_in_flight=in_flight,
            executor_concurrency=max(32, 2 * in_flight * keys),
        )
        run.gateway(settings, "topics")
        dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with Services(settings, bench_infra.log_dir) as services:
            for name in ("projector", "executor", "api"):
                services.start(name)
            services.wait_healthy()
            url = services.base_url + "/buckets"
            # Warm: the executor has its partitions and its lanes have seen a block.
            run.open_loop(url, 1, 2, "chainwarm", complete_dsn=dsn, drain_s=60, poll_ms=20)
            before = load()
            cpu0 = services.cpu()
            anvil_pid = chain.anvil.pid
            anvil0 = cpu_seconds(anvil_pid) if anvil_pid else 0.0
            wait0 = cpu_wait_s(services.procs["executor"].pid)
            kafka0 = cpu_seconds(bench_infra.kafka.pid) if bench_infra.kafka.pid else 0.0
            block0 = chain.anvil.block_number()
            started = time.monotonic()
            figures = run.open_loop(
                url, rate, seconds, "chain", complete_dsn=dsn, dump_jobs=True,
                drain_s=drain_s, poll_ms=20,
            )  # fmt: skip
            wall = time.monotonic() - started
            cpu1 = services.cpu()
            anvil1 = cpu_seconds(anvil_pid) if anvil_pid else 0.0
            wait1 = cpu_wait_s(services.procs["executor"].pid)
            kafka1 = cpu_seconds(bench_infra.kafka.pid) if bench_infra.kafka.pid else 0.0
            block1 = chain.anvil.block_number()
            services.sample_rss()
            figures["peak_rss_mib"] = dict(services.peaks)
    jobs = figures.pop("jobs", {})
    steady, ramp = _throughput(jobs)
    figures["stages"] = asyncio.run(stages(settings, jobs))
    ours = {address.lower() for address, _key in POOL[:keys]}
    figures["blocks"] = _blocks(chain.anvil, block0 + 1, block1, ours)
    settled = max(1, figures.get("completed", 0) + figures.get("failed", 0))
    per_job = {n: 1000 * (cpu1[n] - cpu0[n]) / settled for n in cpu1 if n in cpu0}
    per_job["anvil"] = 1000 * (anvil1 - anvil0) / settled
    per_job["kafka"] = 1000 * (kafka1 - kafka0) / settled
    figures.update(
        in_flight=in_flight,
        keys=keys,
        completed_per_s=steady,
        completed_per_s_with_ramp=ramp,
        cpu_ms_per_job=per_job,
        executor_cpu_share=(cpu1.get("executor", 0) - cpu0.get("executor", 0)) / wall,
        executor_cpu_wait_share=(wait1 - wait0) / wall,
        load_before=before,
        load_after=load(),
    )
    figures["target_per_s"], figures["target"] = target(in_flight, keys)
    figures["limit"] = _limit(figures)
    return figures


async def _manager_creates(settings: Settings, names: list[str]) -> dict[str, Any]:
    backend = await EvmBackend.open(settings)
    recorded: list[Attempt] = []

    async def journal(attempt: Attempt) -> None:
        recorded.append(attempt)

    try:
        while backend.manager.head.number < 0:  # the lanes have read a block
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        done: list[float] = []
        failed = 0
        cpu0, wait0, start = time.process_time(), cpu_wait_s(os.getpid()), loop.time()

        async def one(name: str) -> None:
            nonlocal failed
            try:
                await backend.create_bucket(name, journal)
            except Exception:
                failed += 1
            else:
                done.append(loop.time() - start)

        await asyncio.gather(*(one(n) for n in names))
        cpu = time.process_time() - cpu0
        waited = cpu_wait_s(os.getpid()) - wait0
        wall = loop.time() - start
    finally:
        await backend.close()
    return {
        "creates": len(names),
        "created": len(done),
        "failed": failed,
        "attempts": len(recorded),
        "creates_per_s": len(done) / max(done, default=1e-9),
        "p50_s": sorted(done)[len(done) // 2] if done else None,
        "cpu_ms_per_create": 1000 * cpu / max(1, len(done)),
        "cpu_share": cpu / wall,
        "cpu_wait_share": waited / wall,
    }


def manager_alone(
    bench_infra: Infra, chain: Chain, *, in_flight: int, keys: int, creates: int
) -> dict[str, Any]:
    """The transaction manager and evm backend in this process, no gateway around them: a burst
    of `creates` names at once. What the chain and the manager allow; the gateway runs are
    compared with it."""
    tag = os.urandom(4).hex()
    with key_pool_file(keys) as pool:
        settings = bench_infra.settings.model_copy(
            update={
                "akave_backend": "evm",
                "chain_rpc_url": chain.anvil.rpc_url,
                "chain_contract_address": chain.contract,
                "chain_id": chain.chain_id,
                "chain_key_pool_file": pool,
                "chain_max_in_flight": in_flight,
            }
        )
        block0 = chain.anvil.block_number()
        figures = asyncio.run(
            _manager_creates(settings, [f"alone-{tag}-{i}" for i in range(creates)])
        )
    ours = {address.lower() for address, _key in POOL[:keys]}
    figures["blocks"] = _blocks(chain.anvil, block0 + 1, chain.anvil.block_number(), ours)
    figures.update(in_flight=in_flight, keys=keys, load=load())
    return figures


@dataclass(frozen=True)
class Config:
    in_flight: int
    keys: int

    def offered(self) -> float:
        return max(1.0, min(1.25 * slots_per_s(self.in_flight, self.keys), MAX_OFFERED))


FULL = (Config(1, 1), Config(16, 1), Config(64, 1), Config(256, 1), Config(16, 2), Config(16, 4))
QUICK = (Config(1, 1), Config(16, 1), Config(256, 1), Config(16, 4))


def bench(bench_infra: Infra, *, quick: bool) -> dict[str, Any]:
    seconds = 5.0 if quick else 20.0
    drain = 25.0 if quick else 45.0  # a backlog still queued then is reported as unseen
    result: dict[str, Any] = {
        "block_time_s": BLOCK_TIME_S,
        "block_gas": BLOCK_GAS,
        "seconds": seconds,
        "runs": [],
    }
    with local_chain() as chain:
        for config in QUICK if quick else FULL:
            began = time.monotonic()
            slots = int(slots_per_s(config.in_flight, config.keys) * BLOCK_TIME_S)
            alone = manager_alone(
                bench_infra, chain, in_flight=config.in_flight, keys=config.keys,
                creates=max(4, slots * (2 if quick else 4)),
            )  # fmt: skip
            result.setdefault("manager_alone", []).append(alone)
            figures = one_run(
                bench_infra, chain, in_flight=config.in_flight, keys=config.keys,
                rate=config.offered(), seconds=seconds, drain_s=drain,
            )  # fmt: skip
            figures["run_wall_s"] = time.monotonic() - began
            result["runs"].append(figures)
            print(row(figures, result["runs"][0]["completed_per_s"]), flush=True)
        default = next(r for r in result["runs"] if (r["in_flight"], r["keys"]) == (16, 1))
        half = max(0.5, default["completed_per_s"] / 2)
        result["half_max"] = one_run(
            bench_infra, chain, in_flight=16, keys=1, rate=half,
            seconds=2 * seconds, drain_s=drain,
        )  # fmt: skip
    return result


HEADER = (
    "| in flight | keys | offered/s | completed creates/s (with ramp-up) | x serial "
    "| target | met? "
    "| mined/s (chain) | our txs a block: mean (max) | block gas used (max) | base fee gwei (max) "
    "| executor on / waiting for a CPU (share of the run) | accept/s "
    "| stages p50 (p99) s: api, pickup, slot + sign + record, chain, projector "
    "| CPU ms/job: executor, api, projector, anvil, kafka | completed / failed / unseen "
    "| what limits it | load |"
)


def row(r: dict[str, Any], serial: float) -> str:
    blocks, per_job = r["blocks"], r["cpu_ms_per_job"]
    met = "yes" if r["completed_per_s"] >= r["target_per_s"] else "no"
    if r["in_flight"] == 1:
        met = "-"
    if r["in_flight"] >= 256 and serial > 0 and r["completed_per_s"] < 100 * serial:
        met = "no"
    cpu = ", ".join(
        f"{per_job.get(n, 0):.1f}" for n in ("executor", "api", "projector", "anvil", "kafka")
    )
    stage = r.get("stages", {})
    split = ", ".join(
        f"{stage[k]['p50_ms'] / 1000:.1f} ({stage[k]['p99_ms'] / 1000:.1f})" if k in stage else "-"
        for k in ("api", "executor_pickup", "executor_sign", "chain", "projector")
    )
    return (
        f"| {r['in_flight']} | {r['keys']} | {r['offered_rate']:g} | {r['completed_per_s']:.2f} "
        f"({r['completed_per_s_with_ramp']:.2f}) "
        f"| {r['completed_per_s'] / serial if serial else 0:.0f}x | {r['target']} | {met} "
        f"| {blocks['mined_per_s']:.2f} | {blocks['mean_our_txs_per_block']:.0f} "
        f"({blocks['max_our_txs_per_block']}) "
        f"| {blocks['max_gas_used_share']:.0%} | {blocks['max_base_fee_gwei']:.2f} "
        f"| {r['executor_cpu_share']:.2f} / {r['executor_cpu_wait_share']:.2f} "
        f"| {r['achieved_rate']:.0f} "
        f"| {split} | {cpu} "
        f"| {r['completed']} / {r['failed']} / {r['never_seen']} | {r['limit']} "
        f"| {r['load_before']} |"
    )


def alone_table(result: dict[str, Any]) -> list[str]:
    runs = result.get("manager_alone", [])
    if not runs:
        return []
    serial = runs[0]["creates_per_s"]
    lines = [
        "the transaction manager alone (in this process, a burst of creates at once, no gateway)",
        "| in flight | keys | creates | created / failed | creates/s | x serial | p50 s "
        "| our txs a block (max) | block gas used (max) | base fee gwei (max) | gas per tx "
        "| CPU ms/create | on / waiting for a CPU (share) | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        b = r["blocks"]
        lines.append(
            f"| {r['in_flight']} | {r['keys']} | {r['creates']} | {r['created']} / {r['failed']} "
            f"| {r['creates_per_s']:.2f} | {r['creates_per_s'] / serial if serial else 0:.0f}x "
            f"| {r['p50_s'] or 0:.2f} | {b['max_our_txs_per_block']} "
            f"| {b['max_gas_used_share']:.0%} | {b['max_base_fee_gwei']:.2f} "
            f"| {b['gas_per_tx']:.0f} "
            f"| {r['cpu_ms_per_create']:.1f} | {r['cpu_share']:.2f} / {r['cpu_wait_share']:.2f} "
            f"| {r['load']} |"
        )
    return [*lines, ""]


def table(result: dict[str, Any]) -> list[str]:
    serial = result["runs"][0]["completed_per_s"]
    lines = [
        *alone_table(result),
        f"chain: anvil, {result['block_time_s']:g} s blocks, {result['block_gas'] / 1e6:g}M "
        f"block gas, our Storage contract; {result['seconds']:g} s of arrivals per run",
        HEADER,
        "| " + " | ".join("---" for _ in HEADER.split("|")[1:-1]) + " |",
        *(row(r, serial) for r in result["runs"]),
    ]
    h = result["half_max"]
    e2e = h.get("end_to_end", {})
    p99 = e2e.get("p99_ms", float("inf")) / 1000
    lines += [
        "",
        f"half the maximum (in flight 16, 1 key): {h['offered_rate']:.2f}/s for "
        f"{h['requests'] / h['offered_rate']:.0f} s, {h['completed']} completed, "
        f"{h['failed']} failed, {h['never_seen']} unseen; POST → completed p50 "
        f"{e2e.get('p50_ms', 0) / 1000:.2f} s, p99 {p99:.2f} s, max "
        f"{e2e.get('max_ms', 0) / 1000:.2f} s (target p99 ≤ {P99_TARGET_S:g} s: "
        f"{'met' if p99 <= P99_TARGET_S else 'missed'}); stages p50 (p99) ms: "
        + ", ".join(
            f"{k} {v['p50_ms']:.0f} ({v['p99_ms']:.0f})" for k, v in h.get("stages", {}).items()
        )
        + f"; load {h['load_before']}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (~3 min)")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    results: dict[str, Any] = {"started": stamp, "quick": args.quick, "load_at_start": load()}
    with infra() as bench_infra:
        results["chain"] = bench(bench_infra, quick=args.quick)
    print("\n".join(table(results["chain"])))
    path = OUT / f"results-chain-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
