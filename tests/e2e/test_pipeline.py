"""The pipeline end to end through HTTP, on real Kafka and Postgres, services as processes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from services.executor.backends.simulated import SimulatedChain
from shared.events import decode
from shared.kafka import partition_for
from tests.support.stack import Stack, read_events, unique_name

pytestmark = pytest.mark.slow
TX_HASH = re.compile(r"^0x[0-9a-f]{64}$")


@pytest.fixture(scope="module")
async def chain(stack: Stack) -> AsyncIterator[SimulatedChain]:
    sim = await SimulatedChain.open(stack.settings)
    yield sim
    await sim.close()


async def post(client: httpx.AsyncClient, name: str, **headers: str) -> httpx.Response:
    return await client.post("/buckets", json={"bucket_name": name}, headers=headers)


async def test_bucket_request_goes_queued_processing_completed_and_is_listed(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    name = unique_name("happy")
    response = await post(client, name)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["bucket_name"] == name
    assert response.headers["location"] == f"/buckets/jobs/{body['job_id']}"

    job = await stack.wait_terminal(client, body["job_id"])
    assert job["status"] == "completed", job
    assert TX_HASH.match(job["tx_hash"]) and job["attempts"] == 1 and job["error"] is None

    history = [decode(r.value) for r in await read_events(stack.settings) if r.key == name.encode()]
    assert [e.type for e in history] == ["BucketRequested", "BucketProcessing", "BucketCreated"]
    assert history[-1].data.tx_hash == job["tx_hash"]

    names = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/buckets", params=params)).json()
        names += [item["bucket_name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names.count(name) == 1


async def test_get_right_after_accept_never_answers_404(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    for _ in range(20):
        accepted = await post(client, unique_name("ryw"))
        assert accepted.status_code == 202
        first = await client.get(accepted.headers["location"])
        assert first.status_code == 200, first.text


async def test_job_succeeds_on_third_attempt_after_two_transient_failures(
    stack: Stack, client: httpx.AsyncClient, chain: SimulatedChain
) -> None:
    flaky, broken = unique_name("flaky"), unique_name("broken")
    await chain.inject_fault(flaky, "transient", 2)
    await chain.inject_fault(broken, "transient", 100)
    jobs = [(await post(client, n)).json()["job_id"] for n in (flaky, broken)]

    done = await asyncio.gather(*(stack.wait_terminal(client, j) for j in jobs))
    assert done[0]["status"] == "completed" and done[0]["attempts"] == 3
    assert done[1]["status"] == "failed" and done[1]["attempts"] == 3
    assert "connection reset" in done[1]["error"]
    assert (await chain.create_calls(flaky)) == {"transient": 2, "created": 1}
    assert (await chain.create_calls(broken)) == {"transient": 3}


async def test_permanent_error_fails_at_once(
    stack: Stack, client: httpx.AsyncClient, chain: SimulatedChain
) -> None:
    name = unique_name("poor")
    await chain.inject_fault(name, "insufficient_funds", 1)
    job = await stack.wait_terminal(client, (await post(client, name)).json()["job_id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error_code"] == "insufficient_funds"


async def test_retry_wait_does_not_delay_another_name_on_the_same_partition(
    stack: Stack, client: httpx.AsyncClient, chain: SimulatedChain
) -> None:
    partitions = stack.settings.topic_partitions
    slow = unique_name("slow")
    fast = unique_name("fast")
    while partition_for(fast, partitions) != partition_for(slow, partitions):
        fast = unique_name("fast")
    await chain.inject_fault(slow, "transient", 1)
    slow_id = (await post(client, slow)).json()["job_id"]
    while (await client.get(f"/buckets/jobs/{slow_id}")).json()["attempts"] < 1:
        await asyncio.sleep(0.01)
    fast_job = await stack.wait_terminal(client, (await post(client, fast)).json()["job_id"])
    slow_job = (await client.get(f"/buckets/jobs/{slow_id}")).json()
    assert fast_job["status"] == "completed"
    assert slow_job["status"] == "processing" and slow_job["attempts"] == 1, slow_job
    assert (await stack.wait_terminal(client, slow_id))["status"] == "completed"


async def test_twenty_concurrent_requests_for_one_name_create_it_once(
    stack: Stack, client: httpx.AsyncClient, chain: SimulatedChain
) -> None:
    name = unique_name("race")
    responses = await asyncio.gather(*(post(client, name) for _ in range(20)))
    accepted = [r.json()["job_id"] for r in responses if r.status_code == 202]
    assert all(r.status_code in (202, 409) for r in responses)
    jobs = await asyncio.gather(*(stack.wait_terminal(client, j) for j in accepted))
    completed = [j for j in jobs if j["status"] == "completed"]
    assert len(completed) == 1
    assert {j["error_code"] for j in jobs if j["status"] == "failed"} <= {"bucket_exists"}
    assert (await chain.create_calls(name)).get("created") == 1
    assert (await post(client, name)).status_code == 409


async def test_same_idempotency_key_and_body_returns_the_same_job(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    name = unique_name("idem")
    key = unique_name("key")
    first = await post(client, name, **{"Idempotency-Key": key})
    job = await stack.wait_terminal(client, first.json()["job_id"])
    again = await post(client, name, **{"Idempotency-Key": key})
    assert again.status_code == 202 and again.json()["job_id"] == job["job_id"]
    assert again.json()["status"] == "completed"
    other = await post(client, unique_name("idem"), **{"Idempotency-Key": key})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]


async def test_health_names_each_dependency(stack: Stack, client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "log": "ok", "projector": "ok"}
    partitions = stack.settings.topic_partitions
    assert set(body["projector_lag"]) == {str(p) for p in range(partitions)}
    assert body["lanes"] == []  # the simulated backend signs nothing (tests/chain/ covers lanes)


async def test_concurrent_requests_with_one_idempotency_key_make_one_job(
    stack: Stack, client: httpx.AsyncClient, chain: SimulatedChain
) -> None:
    key = unique_name("key")
    names = [unique_name("idem-a"), unique_name("idem-b")]
    responses = await asyncio.gather(
        *(post(client, names[i % 2], **{"Idempotency-Key": key}) for i in range(10))
    )
    accepted = [r for r in responses if r.status_code == 202]
    assert {r.json()["job_id"] for r in accepted} == {accepted[0].json()["job_id"]}
    winner = accepted[0].json()["bucket_name"]
    assert all(r.json()["bucket_name"] == winner for r in accepted)
    assert all(r.status_code == 422 for r in responses if r not in accepted)
    assert len(accepted) == 5
    await stack.wait_terminal(client, accepted[0].json()["job_id"])
    loser = names[1 - names.index(winner)]
    assert (await chain.create_calls(winner)).get("created") == 1
    assert await chain.create_calls(loser) == {}
