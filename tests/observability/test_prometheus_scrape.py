"""A real Prometheus (Debian's `prometheus`) scrapes the running services during a short load,
and PromQL tells the truth: accepted = the 202s sent, every job's outcome counted once (by
status and error_code), lag back to 0."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.settings import Settings
from tests.support.stack import Stack, free_port, unique_name

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="needs Debian's prometheus package (apt-get install prometheus)",
    ),
    pytest.mark.slow,
]
STACK_SETTINGS = {"executor_metrics_port": free_port(), "projector_metrics_port": free_port()}
NAMES = 20
DUPLICATED = 4  # names requested twice at once: one of each pair fails with bucket_exists


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s: Settings = stack.settings
    home = tmp_path_factory.mktemp("prometheus")
    targets = {
        "akave-api": f"{s.api_host}:{s.api_port}",
        "akave-executor": f"{s.metrics_host}:{s.executor_metrics_port}",
        "akave-projector": f"{s.metrics_host}:{s.projector_metrics_port}",
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    assert PROMETHEUS is not None
    with open(home / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _all_up(url, len(targets)), 60, lambda: _log(home))
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _log(home: Path) -> str:
    return (home / "prometheus.log").read_text(errors="replace")[-3000:]


def _all_up(url: str, targets: int) -> bool:
    try:
        result = query(url, "sum(up)")
    except httpx.HTTPError:
        return False
    return bool(result) and float(result[0]["value"][1]) == targets


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    answer.raise_for_status()
    return list(answer.json()["data"]["result"])


def scalar(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def wait_until(check: Any, timeout: float, explain: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; {explain()}")
        time.sleep(0.5)


def test_promql_counts_match_what_happened(stack: Stack, prometheus: str) -> None:
    async def load() -> tuple[int, list[dict[str, Any]]]:
        names = [unique_name("prom") for _ in range(NAMES)]
        bodies = [{"bucket_name": n} for n in names + names[:DUPLICATED]]
        async with stack.client() as http:
            answers = await asyncio.gather(*(http.post("/buckets", json=b) for b in bodies))
            accepted = [a.json()["job_id"] for a in answers if a.status_code == 202]
            jobs = [await stack.wait_terminal(http, job_id) for job_id in accepted]
        return len(accepted), jobs

    sent_202, jobs = asyncio.run(load())
    assert sent_202 >= NAMES
    truth = Counter((j["status"], j.get("error_code") or "") for j in jobs)
    assert truth[("completed", "")] == NAMES
    assert truth[("failed", "bucket_exists")] == sent_202 - NAMES  # each duplicate's 202

    def matches() -> bool:
        accepted = scalar(prometheus, "sum(akave_jobs_accepted_total)")
        outcomes = {
            (r["metric"]["status"], r["metric"].get("error_code", "")): float(r["value"][1])
            for r in query(prometheus, "sum by (status, error_code) (akave_job_outcomes_total) > 0")
        }
        lag = scalar(prometheus, "sum(akave_projector_lag_records)")
        return accepted == sent_202 and outcomes == dict(truth) and lag == 0

    wait_until(
        matches,
        30,
        lambda: (
            f"202s sent {sent_202}, outcomes {dict(truth)}; Prometheus: "
            f"{query(prometheus, 'sum(akave_jobs_accepted_total)')} "
            f"{query(prometheus, 'sum by (status, error_code) (akave_job_outcomes_total)')} "
            f"{query(prometheus, 'sum(akave_projector_lag_records)')}"
        ),
    )
    # the API's own view agrees: every 202 sent is one POST /buckets series increment
    assert scalar(
        prometheus, 'sum(akave_http_requests_total{route="/buckets", status="202"})'
    ) == float(sent_202)
    # The executor is another target, scraped up to a scrape interval apart from the
    # projector's outcomes: its gauge must come down to 0 too, by its next scrapes.
    wait_until(
        lambda: scalar(prometheus, "sum(akave_executor_jobs_in_flight)") == 0,
        10,
        lambda: f"{query(prometheus, 'akave_executor_jobs_in_flight')}",
    )
