"""`python -m bench [--quick] [--only accept,metrics,e2e,chain,replay]`: the suite,
on a broker and a database of its own (the replay benchmark, `bench.replay`, brings its own).
Figures go to `.local/bench/results-<time>.json`, tables to stdout, and with matplotlib
installed (`pip install -e '.[bench]'`) the latency plot to `.local/bench/`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

from bench import accept, chain, e2e, metrics_cost
from bench.infra import OUT, REPO, infra, load

SUITES = ("accept", "metrics", "e2e", "chain", "replay")


def memory(results: dict[str, Any]) -> list[str]:
    lines = [
        "peak RSS (VmHWM; an API's workers summed)",
        "| benchmark | service | MiB |",
        "| --- | --- | --- |",
    ]
    for entry in results.get("accept", {}).get("runs", []):
        lines.append(
            f"| accept | api, {entry['workers']} worker(s) | {entry['api_peak_rss_mib']:.0f} |"
        )
    for run in results.get("e2e", {}).get("runs", []):
        for name, mib in run["peak_rss_mib"].items():
            lines.append(f"| end to end, {run['offered_rate']:g}/s | {name} | {mib:.0f} |")
    for run in results.get("chain", {}).get("runs", []):
        for name, mib in run["peak_rss_mib"].items():
            lines.append(
                f"| chain, {run['in_flight']} in flight, {run['keys']} key(s) | {name} "
                f"| {mib:.0f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, fewer points")
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated subset")
    parser.add_argument("--workers", default="1,2", help="API worker counts (accept)")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "load_at_start": load(),
    }
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    with infra() as bench_infra:
        if "accept" in chosen:
            workers = tuple(int(w) for w in args.workers.split(","))
            results["accept"] = accept.bench(bench_infra, quick=args.quick, workers=workers)
            print("\n".join(accept.table(results["accept"])), "\n", flush=True)
        if "metrics" in chosen:
            results["metrics"] = metrics_cost.bench(bench_infra, quick=args.quick)
            print("\n".join(metrics_cost.table(results["metrics"])), "\n", flush=True)
        if "e2e" in chosen:
            rates = (200.0,) if args.quick else (50.0, 100.0, 200.0)
            results["e2e"] = e2e.bench(bench_infra, quick=args.quick, rates=rates)
            print("\n".join(e2e.table(results["e2e"])), "\n", flush=True)
        if "chain" in chosen:
            results["chain"] = chain.bench(bench_infra, quick=args.quick)
            print("\n".join(chain.table(results["chain"])), "\n", flush=True)
    print("\n".join(memory(results)), "\n")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"figures: {path}")
    if "accept" in results and importlib.util.find_spec("matplotlib") is not None:
        from bench.plot import latency_vs_load

        png = latency_vs_load(
            results["accept"],
            OUT / f"accept-latency-{stamp}.png",
            f"POST /buckets vs no-op route, open loop (load at start {results['load_at_start']})",
        )
        print(f"plot: {png}")
    if "replay" in chosen and importlib.util.find_spec("bench.replay") is not None:
        replay = [sys.executable, "-m", "bench.replay"] + (
            ["--events", "100000"] if args.quick else []
        )
        subprocess.run(replay, cwd=REPO, check=False)


if __name__ == "__main__":
    main()
