"""Latency against offered load, from the accept benchmark's open-loop runs (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def latency_vs_load(results: dict[str, Any], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for entry in results["runs"]:
        for route, style in (("accept", "-"), ("noop", "--")):
            points = sorted(
                (o["offered_rate"], o["accept"]["p50_ms"], o["accept"]["p99_ms"])
                for o in entry["open_loop"]
                if o["route"] == route and o.get("accept")
            )
            if not points:
                continue
            rates = [p[0] for p in points]
            label = f"{route}, {entry['workers']} worker{'s' if entry['workers'] > 1 else ''}"
            line = ax.plot(rates, [p[2] for p in points], style, marker="o", label=f"{label} p99")
            ax.plot(
                rates,
                [p[1] for p in points],
                style,
                marker=".",
                color=line[0].get_color(),
                alpha=0.5,
                label=f"{label} p50",
            )
    ax.axhline(25, color="grey", linewidth=0.8, linestyle=":")
    ax.text(ax.get_xlim()[0], 26, " target p99 25 ms", color="grey", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("offered load, requests/s (open loop)")
    ax.set_ylabel("latency, ms (from due time)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
