"""Every service's /metrics, scraped from the real processes while they run jobs: the counts
match what was sent and what happened, each job's outcome counted once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from shared import metrics
from shared.settings import Settings
from tests.observability.scrape import Samples, gateway_series, scrape, value
from tests.support.stack import Stack, free_port, unique_name

JOBS = 12
STACK_SETTINGS = {
    "executor_metrics_port": free_port(),
    "projector_metrics_port": free_port(),
    "notifier_metrics_port": free_port(),
}


def metrics_url(settings: Settings, service: str) -> str:
    if service == "api":
        return f"http://{settings.api_host}:{settings.api_port}/metrics"
    return f"http://{settings.metrics_host}:{getattr(settings, f'{service}_metrics_port')}/metrics"


def scrape_or_nothing(url: str) -> Samples:
    try:
        return scrape(url)
    except httpx.ConnectError:
        return {}


def eventually(read: Callable[[], Samples], check: Callable[[Samples], bool]) -> Samples:
    """Metrics observed just after a commit can trail the API's answer by a moment."""
    deadline = time.monotonic() + 10
    while True:
        samples = read()
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ran(stack: Stack) -> Iterator[tuple[Stack, list[dict[str, object]]]]:
    stack.start("notifier")

    async def run_jobs() -> list[dict[str, object]]:
        async with stack.client() as http:
            answers = [
                await http.post("/buckets", json={"bucket_name": unique_name("m")})
                for _ in range(JOBS)
            ]
            assert [a.status_code for a in answers] == [202] * JOBS
            # one duplicate that already completed: a 409, not an accepted job
            done = await stack.wait_terminal(http, answers[0].json()["job_id"])
            assert done["status"] == "completed"
            again = await http.post("/buckets", json={"bucket_name": done["bucket_name"]})
            assert again.status_code == 409
            assert (await http.get("/no/such/path")).status_code == 404
            return [await stack.wait_terminal(http, a.json()["job_id"]) for a in answers]

    yield stack, asyncio.run(run_jobs())


def test_api_counts_requests_by_route_template_and_the_202s_as_accepted_jobs(
    ran: tuple[Stack, list[dict[str, object]]],
) -> None:
    stack, _ = ran
    samples = scrape(metrics_url(stack.settings, "api"))
    assert gateway_series(samples) <= metrics.exported_series()
    assert value(samples, "akave_jobs_accepted_total") == JOBS
    post = {"method": "POST", "route": "/buckets"}
    assert value(samples, "akave_http_requests_total", **post, status="202") == JOBS
    assert value(samples, "akave_http_requests_total", **post, status="409") == 1
    gets = value(
        samples,
        "akave_http_requests_total",
        method="GET",
        route="/buckets/jobs/{job_id}",
        status="200",
    )
    assert gets >= JOBS  # by template: one series for every job id
    assert (
        value(samples, "akave_http_requests_total", method="GET", route="<unmatched>", status="404")
        == 1
    )
    assert value(samples, "akave_http_request_duration_seconds_count", **post) == JOBS + 1


def test_projector_counts_each_outcome_once_and_times_the_stages(
    ran: tuple[Stack, list[dict[str, object]]],
) -> None:
    stack, jobs = ran
    completed = sum(1 for j in jobs if j["status"] == "completed")
    assert completed == JOBS
    samples = eventually(
        lambda: scrape(metrics_url(stack.settings, "projector")),
        lambda s: value(s, "akave_job_outcomes_total", status="completed", error_code="") >= JOBS,
    )
    assert gateway_series(samples) <= metrics.exported_series()
    assert value(samples, "akave_job_outcomes_total", status="completed", error_code="") == JOBS
    for stage in ("accepted_to_processing", "attempt_to_outcome", "accepted_to_outcome"):
        assert value(samples, "akave_job_stage_seconds_count", stage=stage) == JOBS, stage
    # each job became visible at least three times: queued, processing, completed
    assert value(samples, "akave_job_stage_seconds_count", stage="event_to_visible") >= 3 * JOBS
    took = value(samples, "akave_job_stage_seconds_sum", stage="accepted_to_outcome") / JOBS
    assert 0.05 <= took < 30  # the log, the chain, then a receipt poll (every 0.2 s here)
    assert value(samples, "akave_projector_batch_records_sum") >= 3 * JOBS
    assert value(samples, "akave_projector_checkpoint_age_seconds") == 0  # caught up
    lags = [v for (n, _), v in samples.items() if n == "akave_projector_lag_records"]
    assert lags and all(v == 0 for v in lags)


def test_executor_and_notifier_serve_their_metrics(
    ran: tuple[Stack, list[dict[str, object]]],
) -> None:
    stack, _ = ran
    executor = scrape(metrics_url(stack.settings, "executor"))
    assert gateway_series(executor) <= metrics.exported_series()
    assert value(executor, "akave_executor_events_appended_total", type="BucketCreated") == JOBS
    assert value(executor, "akave_executor_events_appended_total", type="BucketProcessing") >= JOBS
    assert value(executor, "akave_executor_jobs_in_flight") == 0
    notifier = eventually(lambda: scrape_or_nothing(metrics_url(stack.settings, "notifier")), bool)
    assert notifier, stack.logs("notifier")
    assert gateway_series(notifier) <= metrics.exported_series()
    assert ("akave_webhook_oldest_due_age_seconds", frozenset()) in notifier
    assert value(notifier, "akave_webhook_oldest_due_age_seconds") == 0  # no webhooks


def test_every_consumer_exports_the_consume_counters_and_its_lag(
    ran: tuple[Stack, list[dict[str, object]]],
) -> None:
    stack, _ = ran
    for consumer in ("executor", "projector", "notifier"):
        samples = eventually(
            lambda c=consumer: scrape(metrics_url(stack.settings, c)),
            lambda s, c=consumer: (
                all(v == 0 for (n, _), v in s.items() if n == "akave_consumer_lag_records")
                and value(s, "akave_consumer_records_read_total", consumer=c) >= 3 * JOBS
            ),
        )
        # every job is three events (requested, processing, created), all read by each
        assert value(samples, "akave_consumer_records_read_total", consumer=consumer) >= 3 * JOBS
        assert value(samples, "akave_consumer_parked_total", consumer=consumer) == 0
        assert value(samples, "akave_consumer_unknown_skipped_total", consumer=consumer) == 0
        lags = {
            dict(labels)["partition"]: v
            for (n, labels), v in samples.items()
            if n == "akave_consumer_lag_records"
        }
        assert lags and set(lags.values()) == {0}, (consumer, lags)


def test_api_with_several_workers_answers_the_sum_over_all_of_them(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = stack_settings.model_copy(update={"api_workers": 3, "api_port": free_port()})
    api = Stack(settings, tmp_path_factory.mktemp("workers"))
    api.start("api")
    try:
        before = value(
            scrape(api.base_url + "/metrics"),
            "akave_http_requests_total",
            method="GET",
            route="/health",
            status="200",
        )
        # fresh connections, so the requests spread over the workers
        for _ in range(30):
            assert httpx.get(api.base_url + "/health", timeout=5).status_code == 200
        for _ in range(3):  # whichever worker answers the scrape knows all 30
            after = value(
                scrape(api.base_url + "/metrics"),
                "akave_http_requests_total",
                method="GET",
                route="/health",
                status="200",
            )
            assert after == before + 30
    finally:
        api.stop()
