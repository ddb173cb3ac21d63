"""`python -m chaos`: the fault suite. Exit status 1 if any invariant failed."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from chaos.report import conditions, summary, table
from chaos.scenarios import SCENARIOS
from chaos.suite import Options, Result, run


def parse(argv: list[str] | None = None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="jobs per scenario")
    parser.add_argument("--outage", type=float, default=defaults.outage_s, help="seconds")
    parser.add_argument(
        "--block-time", type=float, default=defaults.block_time_s, help="the chain's, seconds"
    )
    parser.add_argument("--rate", type=float, default=defaults.rate, help="requests a second")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    args = parser.parse_args(argv)
    chosen = tuple(s for s in args.scenarios.split(",") if s)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    return Options(
        jobs=args.jobs,
        outage_s=args.outage,
        block_time_s=args.block_time,
        rate=args.rate,
        scenarios=chosen,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    print(conditions(options, os.getloadavg()) + "\n", flush=True)

    def show(result: Result) -> None:
        print(table(result), flush=True)

    results = asyncio.run(run(options, show))
    print(summary(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
