"""The pipeline end to end through HTTP, on real Kafka and Postgres, services as processes, on
an anvil chain of the module's own with our contract and 0.5 s blocks. The witness of what was
created is the chain (CreateBucket logs); failures are real: reads of one name answered with a
node error (tests/support/rpc_faults.py), the signing key without funds."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import orjson
import pytest

from shared.events import decode
from shared.kafka import partition_for
from tests.support.evm_stack import ADDRESS, StackChain, signed_hashes
from tests.support.rpc_faults import RpcFaults
from tests.support.stack import Stack, read_events, unique_name

pytestmark = pytest.mark.slow
TX_HASH = re.compile(r"^0x[0-9a-f]{64}$")
STACK_CHAIN = {"block_time": 0.5, "rpc_faults": True}
STACK_SETTINGS = {
    "chain_insufficient_funds_wait_s": 1.0,
    "retry_delay_s": 3.0,  # well past a create on 0.5 s blocks: see the retry wait test
}


@pytest.fixture(scope="module")
def chain(stack: Stack, stack_chain: StackChain) -> StackChain:
    return stack_chain


@pytest.fixture(scope="module")
def faults(chain: StackChain) -> RpcFaults:
    assert chain.faults is not None
    return chain.faults


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
    assert [e.type for e in history] == [
        "BucketRequested",
        "BucketProcessing",
        "BucketTransactionSigned",  # recorded before it is broadcast
        "BucketCreated",
    ]
    assert history[2].data.tx_hash == history[-1].data.tx_hash == job["tx_hash"]

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
    stack: Stack, client: httpx.AsyncClient, chain: StackChain, faults: RpcFaults
) -> None:
    flaky, broken = unique_name("flaky"), unique_name("broken")
    faults.fail_views(flaky, 2)
    faults.fail_views(broken, 100)
    jobs = [(await post(client, n)).json()["job_id"] for n in (flaky, broken)]

    done = await asyncio.gather(*(stack.wait_terminal(client, j) for j in jobs))
    assert done[0]["status"] == "completed" and done[0]["attempts"] == 3
    assert done[1]["status"] == "failed" and done[1]["attempts"] == 3
    assert done[1]["error_code"] == "backend_error" and "header not found" in done[1]["error"]
    assert (faults.given(flaky), chain.created(flaky)) == (2, 1)
    assert (faults.given(broken), chain.created(broken)) == (3, 0)


async def test_permanent_error_fails_at_once(
    stack: Stack, client: httpx.AsyncClient, chain: StackChain
) -> None:
    name = unique_name("poor")
    with chain.unfunded():
        job = await stack.wait_terminal(client, (await post(client, name)).json()["job_id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error_code"] == "insufficient_funds"
    assert chain.created(name) == 0


async def test_retry_wait_does_not_delay_another_name_on_the_same_partition(
    stack: Stack, client: httpx.AsyncClient, faults: RpcFaults
) -> None:
    partitions = stack.settings.topic_partitions
    slow = unique_name("slow")
    fast = unique_name("fast")
    while partition_for(fast, partitions) != partition_for(slow, partitions):
        fast = unique_name("fast")
    faults.fail_views(slow, 1)
    slow_id = (await post(client, slow)).json()["job_id"]
    while (await client.get(f"/buckets/jobs/{slow_id}")).json()["attempts"] < 1:
        await asyncio.sleep(0.01)
    fast_job = await stack.wait_terminal(client, (await post(client, fast)).json()["job_id"])
    slow_job = (await client.get(f"/buckets/jobs/{slow_id}")).json()
    assert fast_job["status"] == "completed"
    assert slow_job["status"] == "processing" and slow_job["attempts"] == 1, slow_job
    assert (await stack.wait_terminal(client, slow_id))["status"] == "completed"


async def test_twenty_concurrent_requests_for_one_name_create_it_once(
    stack: Stack, client: httpx.AsyncClient, chain: StackChain
) -> None:
    name = unique_name("race")
    responses = await asyncio.gather(*(post(client, name) for _ in range(20)))
    accepted = [r.json()["job_id"] for r in responses if r.status_code == 202]
    assert all(r.status_code in (202, 409) for r in responses)
    jobs = await asyncio.gather(*(stack.wait_terminal(client, j) for j in accepted))
    completed = [j for j in jobs if j["status"] == "completed"]
    assert len(completed) == 1
    assert {j["error_code"] for j in jobs if j["status"] == "failed"} <= {"bucket_exists"}
    assert chain.created(name) == 1
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
    deadline = time.monotonic() + 30
    while not (body := (await client.get("/health")).json())["lanes"]:
        assert time.monotonic() < deadline, "the executor never published its lane"
        await asyncio.sleep(0.2)  # published every CHAIN_LANE_STATUS_INTERVAL_S
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok", body
    assert body["checks"] == {"database": "ok", "log": "ok", "projector": "ok"}
    partitions = stack.settings.topic_partitions
    assert set(body["projector_lag"]) == {str(p) for p in range(partitions)}
    assert [(lane["address"], lane["state"]) for lane in body["lanes"]] == [(ADDRESS, "ok")]


async def test_concurrent_requests_with_one_idempotency_key_make_one_job(
    stack: Stack, client: httpx.AsyncClient, chain: StackChain
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
    assert (chain.created(winner), chain.created(loser)) == (1, 0)
    events = [orjson.loads(r.value) for r in await read_events(stack.settings)]
    assert loser not in signed_hashes(events)  # never even signed
