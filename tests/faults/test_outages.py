"""With the log or the database down the API answers 503 fast, and recovers by itself.

The executor signs on the evm backend (anvil of the module's own): its signer fence is a
Postgres session, so a database outage loses it and the executor restarts in its own process,
as a standby (chain/fence.py, docs/decisions.md): no process exits."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from localinfra.kafka import LocalKafka
from tests.support.stack import Stack, unique_name
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
OUTAGE_ANSWER_S = 5.0


@pytest.fixture(scope="module")
def stack(proxied_stack: Stack) -> Stack:
    """The usual stack, except that every service reaches Postgres through `db_proxy`."""
    return proxied_stack


async def timed(
    client: httpx.AsyncClient, method: str, path: str, **kw: object
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.request(method, path, **kw)  # type: ignore[arg-type]
    return response, time.monotonic() - started


async def recovers(client: httpx.AsyncClient, stack: Stack, within: float = 60) -> float:
    """Seconds until a new job is accepted and completes again."""
    started = time.monotonic()
    while True:
        response = await client.post("/buckets", json={"bucket_name": unique_name("back")})
        if response.status_code == 202:
            job = await stack.wait_terminal(client, response.json()["job_id"], timeout=within)
            assert job["status"] == "completed"
            return time.monotonic() - started
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < within, "never recovered"


async def test_kafka_down_gives_fast_503_and_recovery(
    stack: Stack, client: httpx.AsyncClient, kafka: LocalKafka | None
) -> None:
    if kafka is None:
        pytest.skip("the suite does not own the broker (KAFKA_BOOTSTRAP_SERVERS given)")
    before = await client.post("/buckets", json={"bucket_name": unique_name("pre")})
    assert before.status_code == 202
    kafka.stop()
    try:
        for _ in range(3):
            response, took = await timed(
                client, "POST", "/buckets", json={"bucket_name": unique_name("down")}
            )
            assert response.status_code == 503, response.text
            assert took < OUTAGE_ANSWER_S and response.headers["retry-after"]
        health, took = await timed(client, "GET", "/health")
        assert health.status_code == 503 and took < OUTAGE_ANSWER_S
        assert health.json()["checks"] == {"database": "ok", "log": "down", "projector": "unknown"}
    finally:
        kafka.start()
    await recovers(client, stack)
    assert (await stack.wait_terminal(client, before.json()["job_id"]))["status"] == "completed"
    stack.assert_alive()


async def test_database_down_gives_fast_503_and_recovery(
    stack: Stack, client: httpx.AsyncClient, db_proxy: TcpProxy
) -> None:
    job_id = (await client.post("/buckets", json={"bucket_name": unique_name("pre")})).json()[
        "job_id"
    ]
    await stack.wait_terminal(client, job_id)
    db_proxy.cut()
    try:
        for method, path, kw in [
            ("POST", "/buckets", {"json": {"bucket_name": unique_name("down")}}),
            ("GET", f"/buckets/jobs/{job_id}", {}),
            ("GET", "/buckets", {}),
            ("POST", "/webhooks", {"json": {"url": "http://127.0.0.1:9/hook"}}),
            ("GET", "/webhooks", {}),
            ("GET", f"/webhooks/{job_id}", {}),
            ("GET", f"/webhooks/{job_id}/deliveries", {}),
            ("GET", f"/webhooks/deliveries/{job_id}", {}),
            ("DELETE", f"/webhooks/{job_id}", {}),
        ]:
            response, took = await timed(client, method, path, **kw)
            assert response.status_code == 503, (path, response.text)
            assert took < OUTAGE_ANSWER_S and response.headers["retry-after"]
        health, took = await timed(client, "GET", "/health")
        assert health.status_code == 503 and took < OUTAGE_ANSWER_S
        assert health.json()["checks"] == {"database": "down", "log": "ok", "projector": "unknown"}
        # The executor's signer locks live in Postgres: it loses them, signs nothing more, and
        # starts again in its own process, waiting as a standby until Postgres is back.
        deadline = time.monotonic() + 30
        while "signer fence lost" not in stack.logs("executor"):
            assert time.monotonic() < deadline, stack.logs("executor")
            await asyncio.sleep(0.2)
        stack.assert_alive()
    finally:
        db_proxy.restore()
    await recovers(client, stack)
    stack.assert_alive()  # no process exited: every service recovered by itself


async def test_services_started_during_an_outage_wait_for_it_to_end(
    stack: Stack, client: httpx.AsyncClient, db_proxy: TcpProxy
) -> None:
    stack.stop("executor")
    stack.stop("projector")
    db_proxy.cut()
    try:
        stack.start("executor", "projector")
        await asyncio.sleep(3)
        stack.assert_alive()  # neither gave up and exited
    finally:
        db_proxy.restore()
    await recovers(client, stack)
