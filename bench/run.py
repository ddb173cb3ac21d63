"""Running the load generators as processes of their own and reading their figures."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.infra import REPO, env_for
from shared.settings import Settings

LUA = Path(__file__).with_name("post.lua")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, connections: int, seconds: float, prefix: str) -> dict[str, Any]:
    """Closed loop: `connections` clients, each sending its next POST when answered."""
    before = _children_cpu()
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"BENCH_NAME_PREFIX": prefix},
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    secs = figures["duration_us"] / 1e6
    figures["rate"] = figures["requests"] / secs
    figures["loadgen_cpu_share"] = (_children_cpu() - before) / secs
    for q in ("p50", "p90", "p99", "max"):
        figures[f"{q}_ms"] = figures.pop(f"{q}_us") / 1000
    return figures


def open_loop(url: str, rate: float, seconds: float, prefix: str, **options: Any) -> dict[str, Any]:
    """Fixed arrival rate (bench.loadgen); latency from each request's due time."""
    cmd = [
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{seconds:g}",
        "--name-prefix",
        prefix,
    ]
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        cmd += [flag] if value is True else [flag, str(value)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def raw_produce(
    settings: Settings, concurrency: int, seconds: float, prefix: str
) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.raw_produce",
            "--concurrency",
            str(concurrency),
            "--duration",
            f"{seconds:g}",
            "--prefix",
            prefix,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=env_for(settings),
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def gateway(settings: Settings, command: str) -> None:
    """A one-shot `akave-gateway` command (topics, migrate) with these settings; its output
    is in the error when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", command],
        cwd=REPO,
        env=env_for(settings),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"akave-gateway {command} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )
