"""The verdict as text: one table per scenario, one line per invariant."""

from __future__ import annotations

from chaos.suite import IN_FLIGHT, KEYS, Options, Result


def conditions(options: Options, load_average: tuple[float, float, float]) -> str:
    return (
        f"N={options.jobs} jobs per scenario at {options.rate:g}/s, on anvil with "
        f"{options.block_time_s:g} s blocks (a fresh Storage contract per scenario; "
        f"{len(KEYS)} key x {IN_FLIGHT} in flight: at best {options.creates_per_s:g} creates/s), "
        f"outages {options.outage_s:g} s, "
        f"load average at start {load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f}"
    )


def table(result: Result) -> str:
    s = result.scenario
    lines = [
        f"### {s.name}: {s.title} ({result.seconds:.0f} s)",
        *(["", f"Storage contract {result.contract}"] if result.contract else []),
        "",
        "| invariant | verdict | detail |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c.name} | {'PASS' if c.ok else 'FAIL'} | {c.detail} |" for c in result.checks]
    if not result.ok:
        lines.append(f"\nservice logs: {result.logs}")
    return "\n".join(lines) + "\n"


def summary(results: list[Result]) -> str:
    failed = [r.scenario.name for r in results if not r.ok]
    total = sum(r.seconds for r in results)
    verdict = f"FAIL: {', '.join(failed)}" if failed else "PASS"
    return f"{len(results)} scenarios in {total:.0f} s: {verdict}"
