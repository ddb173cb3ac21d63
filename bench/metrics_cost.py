"""What the API's metrics cost the accept path: POST /buckets per second with API_METRICS on
against the same server with it off, in one run (target: on/off >= 0.95, issue 11).

Two API processes run side by side on the same broker, database and settings but for
API_METRICS; wrk loads one at a time, alternating off, on, off, on... so that drift in the
machine's load falls on both alike; the order flips every round (off first, then on first),
since the second run of a pair tends to be faster. Each round's ratio is reported, so the
noise shows.
"""

from __future__ import annotations

from typing import Any

from bench import run
from bench.accept import preload
from bench.infra import Infra, Services, free_port, load

ROUNDS = 6


def bench(infra: Infra, *, quick: bool, workers: int = 1, connections: int = 64) -> dict[str, Any]:
    seconds = 4.0 if quick else 10.0
    preload(infra.settings.database_url)
    base = infra.settings_for(api_workers=workers)
    run.gateway(base, "topics")
    results: dict[str, Any] = {"workers": workers, "seconds": seconds, "rounds": []}
    off_settings = base.model_copy(update={"api_metrics": False, "api_port": free_port()})
    on_settings = base.model_copy(update={"api_metrics": True, "api_port": free_port()})
    with Services(off_settings, infra.log_dir) as off, Services(on_settings, infra.log_dir) as on:
        off.start("api", API_METRICS="false")
        on.start("api", API_METRICS="true")
        off.wait_healthy()
        on.wait_healthy()
        for name, services in (("off", off), ("on", on)):
            run.wrk(services.base_url + "/buckets", connections, 2, f"warm{name}")
        for i in range(1 if quick else ROUNDS):
            figures: dict[str, Any] = {"load": load()}
            pair = (("off", off), ("on", on))
            for name, services in pair if i % 2 == 0 else pair[::-1]:
                cpu_before = services.cpu()["api"]
                figures[name] = run.wrk(
                    services.base_url + "/buckets", connections, seconds, f"m{name}{i}"
                )
                served = figures[name]["requests"]
                figures[name]["cpu_ms_per_request"] = (
                    1000 * (services.cpu()["api"] - cpu_before) / served
                )
            figures["on_over_off"] = figures["on"]["rate"] / figures["off"]["rate"]
            results["rounds"].append(figures)
    total_on = sum(r["on"]["rate"] for r in results["rounds"])
    total_off = sum(r["off"]["rate"] for r in results["rounds"])
    results["on_over_off"] = total_on / total_off
    # CPU per request does not move with the machine's load the way a rate does
    results["cpu_on_over_off"] = sum(r["on"]["cpu_ms_per_request"] for r in results["rounds"]) / (
        sum(r["off"]["cpu_ms_per_request"] for r in results["rounds"])
    )
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"metrics cost on the accept path, {results['workers']} worker(s), wrk C=64, "
        f"{results['seconds']:g} s per run, alternating",
        "| round (first) | off POST/s | on POST/s | on/off | CPU ms/req off, on | load |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(results["rounds"], 1):
        off, on = r["off"], r["on"]
        lines.append(
            f"| {i} ({'off' if i % 2 else 'on'}) | {off['rate']:.0f} | {on['rate']:.0f} "
            f"| {r['on_over_off']:.3f} "
            f"| {off['cpu_ms_per_request']:.3f}, {on['cpu_ms_per_request']:.3f} | {r['load']} |"
        )
    lines.append(
        f"| all | | | **{results['on_over_off']:.3f}** "
        f"| on/off **{results['cpu_on_over_off']:.3f}** | |"
    )
    return lines
