"""`POST /buckets/jobs/{id}/retry` on the real stack: a retry is a new job in the log, linked
both ways; the same retry twice is one job; failures that cannot heal, and jobs that are not
failed, are refused; bad input never gets a 500. On an anvil chain of the module's own (0.5 s
blocks, our contract); the failure that heals is the signing key without funds, then funded."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from services.api.retries import retry_job_id
from shared.events import BucketRequested, decode, new_event
from shared.kafka import Appender
from tests.support.evm_stack import StackChain
from tests.support.stack import Stack, read_events, unique_name

STACK_CHAIN = {"block_time": 0.5}  # the key's funds go and come back (StackChain.unfunded)
STACK_SETTINGS = {"retry_delay_s": 0.0, "chain_insufficient_funds_wait_s": 1.0}


@pytest.fixture(scope="module")
def chain(stack: Stack, stack_chain: StackChain) -> StackChain:
    return stack_chain


async def failed_job(stack: Stack, client: httpx.AsyncClient, chain: StackChain) -> dict:
    """A job that failed for a reason that heals: the key had no funds (then "topped up")."""
    name = unique_name("retry")
    with chain.unfunded():
        accepted = (await client.post("/buckets", json={"bucket_name": name})).json()
        job = await stack.wait_terminal(client, accepted["job_id"])
    assert job["status"] == "failed" and job["error_code"] == "insufficient_funds", job
    return job


async def test_a_retry_is_a_new_linked_job_that_completes_and_is_idempotent(
    stack: Stack, client: httpx.AsyncClient, chain: StackChain
) -> None:
    failed = await failed_job(stack, client, chain)
    first, second = await asyncio.gather(
        client.post(f"/buckets/jobs/{failed['job_id']}/retry"),
        client.post(f"/buckets/jobs/{failed['job_id']}/retry"),
    )
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["job_id"] == second.json()["job_id"]
    retry_id = first.json()["job_id"]
    assert retry_id == str(retry_job_id(uuid.UUID(failed["job_id"])))
    assert first.json()["retry_of"] == failed["job_id"]
    assert first.headers["location"] == f"/buckets/jobs/{retry_id}"
    third = await client.post(f"/buckets/jobs/{failed['job_id']}/retry")
    assert third.status_code == 202 and third.headers["idempotent-replayed"] == "true"
    assert third.json()["job_id"] == retry_id

    done = await stack.wait_terminal(client, retry_id)
    assert done["status"] == "completed" and done["retry_of"] == failed["job_id"], done
    old = (await client.get(f"/buckets/jobs/{failed['job_id']}")).json()
    assert old["status"] == "failed" and old["retried_by"] == retry_id  # still failed: terminal

    requests = [
        event
        for record in await read_events(stack.settings)
        if (event := decode(record.value)).type == "BucketRequested"
        and event.subject == failed["bucket_name"]
    ]
    assert [(str(e.job_id), e.data.retry_of) for e in requests] == [  # type: ignore[union-attr]
        (failed["job_id"], None),
        (retry_id, uuid.UUID(failed["job_id"])),
    ]  # appended once, whatever the number of calls
    assert chain.created(failed["bucket_name"]) == 1  # the retry's create, on the chain
    completed = await client.post(f"/buckets/jobs/{retry_id}/retry")
    assert completed.status_code == 409, completed.text


async def test_bucket_exists_while_the_name_has_an_owner_is_refused(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    name = unique_name("owned")
    a, b = await asyncio.gather(
        client.post("/buckets", json={"bucket_name": name}),
        client.post("/buckets", json={"bucket_name": name}),
    )
    jobs = [await stack.wait_terminal(client, r.json()["job_id"]) for r in (a, b)]
    loser = next(j for j in jobs if j["status"] == "failed")
    assert loser["error_code"] == "bucket_exists"
    refused = await client.post(f"/buckets/jobs/{loser['job_id']}/retry")
    assert refused.status_code == 409, refused.text
    assert refused.json()["job_id"] == next(j for j in jobs if j is not loser)["job_id"]


async def test_a_failure_no_retry_can_heal_is_refused(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """A name the chain refuses, written to the log by another producer (the API refuses it)."""
    job_id = uuid.uuid4()
    appender = Appender(stack.settings)
    try:
        event = new_event(BucketRequested(job_id=job_id, bucket_name="ab"), "/test/producer")
        await appender.append(stack.settings.bucket_events_topic, event)
    finally:
        await appender.stop()
    job = await stack.wait_terminal(client, str(job_id))
    assert job["error_code"] == "invalid_bucket_name", job
    refused = await client.post(f"/buckets/jobs/{job_id}/retry")
    assert refused.status_code == 422, refused.text


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"/buckets/jobs/{uuid.uuid4()}/retry", 404),
        ("/buckets/jobs/not-a-uuid/retry", 422),
        ("/buckets/jobs/%00/retry", 422),
        ("/buckets/jobs/" + "9" * 5000 + "/retry", 422),
    ],
)
async def test_bad_input_is_a_client_error(client: httpx.AsyncClient, path: str, code: int) -> None:
    response = await client.post(path, content=b"{not json", headers={"content-type": "text/x"})
    assert response.status_code in (code, 414, 431), response.text
