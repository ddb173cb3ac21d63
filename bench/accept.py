"""Benchmark 1: how many POST /buckets the API accepts per second, against its two ceilings.

For each API worker count: closed-loop maximum (wrk, C connections) of the real route and of
the no-op twin (`BENCH_NOOP_ROUTE`, same server and settings), raw aiokafka appends with the
same concurrency (the log's ceiling), then open-loop runs at fractions of each maximum for
latency against load (p99 at half the maximum rate is the target).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

from bench import run
from bench.infra import Infra, Services, load
from services.api.bench_noop import PATH as NOOP_PATH

FRACTIONS = (0.25, 0.5, 0.75, 0.9)
PRELOADED_JOBS = 100_000


def preload(database_url: str) -> None:
    """Completed jobs in `bucket_jobs`, so the 409 check searches a table of realistic size."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE bucket_jobs"))
        conn.execute(
            text(
                "INSERT INTO bucket_jobs (id, bucket_name, status, tx_hash, attempts, "
                "created_at, updated_at, completed_at) "
                "SELECT gen_random_uuid(), 'pre-' || g, 'completed', "
                "'0x' || lpad(to_hex(g), 64, '0'), 1, now(), now(), now() "
                "FROM generate_series(1, :n) g"
            ),
            {"n": PRELOADED_JOBS},
        )
        conn.execute(text("ANALYZE bucket_jobs"))
    engine.dispose()


def bench(
    infra: Infra, *, quick: bool, workers: tuple[int, ...] = (1, 2), connections: int = 64
) -> dict[str, Any]:
    seconds = 4.0 if quick else 10.0
    preload(infra.settings.database_url)
    results: dict[str, Any] = {"connections": connections, "seconds": seconds, "runs": []}
    for count in workers:
        settings = infra.settings_for(api_workers=count)
        run.gateway(settings, "topics")
        with Services(settings, infra.log_dir) as services:
            services.start("api", BENCH_NOOP_ROUTE="true")
            services.wait_healthy()
            accept_url = services.base_url + "/buckets"
            noop_url = services.base_url + NOOP_PATH
            # Warm up both routes (connections, producer metadata, JIT-free but caches warm).
            run.wrk(accept_url, connections, 2, f"warm{count}")
            run.wrk(noop_url, connections, 2, f"warmn{count}")
            entry: dict[str, Any] = {"workers": count, "load_before": load()}
            cpu0 = services.cpu()
            entry["noop"] = run.wrk(noop_url, connections, seconds, f"n{count}")
            cpu1 = services.cpu()
            entry["accept"] = run.wrk(accept_url, connections, seconds, f"a{count}")
            cpu2 = services.cpu()
            entry["noop"]["server_cpu_share"] = (cpu1["api"] - cpu0["api"]) / seconds
            entry["accept"]["server_cpu_share"] = (cpu2["api"] - cpu1["api"]) / seconds
            entry["raw_produce"] = run.raw_produce(settings, connections, seconds, f"r{count}")
            entry["accept_over_noop"] = entry["accept"]["rate"] / entry["noop"]["rate"]
            entry["accept_over_raw"] = entry["accept"]["rate"] / entry["raw_produce"]["rate"]
            fractions = (0.5,) if quick else FRACTIONS
            entry["open_loop"] = []
            for route, url, top in (
                ("accept", accept_url, entry["accept"]["rate"]),
                ("noop", noop_url, entry["noop"]["rate"]),
            ):
                for fraction in fractions:
                    rate = round(top * fraction)
                    figures = run.open_loop(
                        url, rate, seconds, f"o{route[0]}{count}-{int(fraction * 100)}"
                    )
                    figures.update(route=route, fraction=fraction, load=load())
                    entry["open_loop"].append(figures)
            services.sample_rss()
            entry["api_peak_rss_mib"] = services.peaks.get("api", 0.0)
            entry["load_after"] = load()
        results["runs"].append(entry)
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"accept rate, closed loop C={results['connections']} (wrk), "
        f"{results['seconds']:g} s each; API CPU ms per request from /proc",
        "| workers | accept/s | noop/s | raw produce/s | accept/noop | accept/raw "
        "| accept p50/p99 ms | noop p50/p99 ms | CPU ms/req accept, noop "
        "| accept p99 at half max (open loop) | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in results["runs"]:
        half = next(
            (o for o in e["open_loop"] if o["route"] == "accept" and o["fraction"] == 0.5), None
        )
        half_txt = (
            f"{half['accept']['p99_ms']:.1f} ms at {half['offered_rate']:g}/s" if half else "-"
        )
        a, n, r = e["accept"], e["noop"], e["raw_produce"]
        cpu_a = 1000 * a["server_cpu_share"] / a["rate"]
        cpu_n = 1000 * n["server_cpu_share"] / n["rate"]
        lines.append(
            f"| {e['workers']} | {a['rate']:.0f} | {n['rate']:.0f} | {r['rate']:.0f} "
            f"| {e['accept_over_noop']:.2f} | {e['accept_over_raw']:.3f} "
            f"| {a['p50_ms']:.1f}/{a['p99_ms']:.1f} | {n['p50_ms']:.1f}/{n['p99_ms']:.1f} "
            f"| {cpu_a:.2f}, {cpu_n:.2f} | {half_txt} | {e['load_before']} |"
        )
    return lines
