"""`GET /buckets/jobs/{id}/events` (Server-Sent Events) against the real API process, its
executor on an automining anvil chain of the module's own, which stops mining while a test
watches a job in `processing`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.evm_stack import StackChain
from tests.support.stack import Stack, unique_name
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
STACK_SETTINGS = {
    "live_poll_interval_s": 0.1,
    "live_heartbeat_s": 0.5,
    "live_max_streams": 2,
}


@pytest.fixture(scope="module")
def stack(proxied_stack: Stack) -> Stack:
    """The usual stack, except that every service reaches Postgres through `db_proxy`."""
    return proxied_stack


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The stream's events ({"event", "id", "data"}) and comments ({"comment"}), as they come."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif not line:
            if fields:
                yield {**fields, "data": json.loads(fields["data"])}
                fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def next_event(stream: AsyncIterator[dict[str, Any]], timeout: float = 30) -> Any:
    """The next event, skipping heartbeats; returns (event, heartbeats seen before it)."""
    beats = 0
    async with asyncio.timeout(timeout):
        async for message in stream:
            if "comment" in message:
                beats += 1
                continue
            return message, beats
    return None, beats


async def signed(stream: AsyncIterator[dict[str, Any]], processing: Any) -> Any:
    """The `processing` event that shows the job's pending transaction: `processing` itself if
    it does, else the next one (the create is signed just after the attempt starts)."""
    while processing["data"]["tx_hash"] is None:
        processing, _ = await next_event(stream)
        assert processing["event"] == "processing", processing
    return processing


async def test_stream_follows_a_job_from_queued_to_completed(
    stack: Stack, client: httpx.AsyncClient, stack_chain: StackChain
) -> None:
    stack.stop("executor")  # the job waits in `queued` until the executor is back
    accepted = (await client.post("/buckets", json={"bucket_name": unique_name("live")})).json()
    url = f"/buckets/jobs/{accepted['job_id']}/events"
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = messages(response)
        first, _ = await next_event(stream)
        assert first["event"] == "queued" and first["data"]["status"] == "queued"

        # A reconnect that already saw `queued` (Last-Event-ID) resumes after it.
        resume = {"Last-Event-ID": first["id"]}
        async with client.stream("GET", url, headers=resume) as second:
            assert second.status_code == 200
            third = await client.get(url)  # the limit is 2 streams
            assert third.status_code == 503, third.text
            assert "too many open event streams" in third.json()["detail"]
            assert third.headers["retry-after"] == str(stack.settings.retry_after_s)

            with stack_chain.not_mining():  # its create waits unmined: `processing`
                stack.start("executor")
                processing, beats = await next_event(stream, timeout=60)
                assert beats >= 1, "no heartbeat while the job waited"
                assert processing["event"] == "processing"
                assert processing["data"]["attempts"] == 1
                resumed, _ = await next_event(messages(second))
                assert (resumed["event"], resumed["id"]) == ("processing", processing["id"])
                pending = await signed(stream, processing)
        completed, _ = await next_event(stream)
        assert completed["event"] == "completed"
        assert completed["data"]["tx_hash"] == pending["data"]["tx_hash"]
        after, _ = await next_event(stream, timeout=10)
        assert after is None  # no more events: the stream closed after the end

    final = (await client.get(f"/buckets/jobs/{accepted['job_id']}")).json()
    assert completed["data"] == final
    assert len({first["id"], processing["id"], completed["id"]}) == 3


async def test_stream_of_a_finished_job_sends_its_final_state_and_closes(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    accepted = (await client.post("/buckets", json={"bucket_name": unique_name("done")})).json()
    job = await stack.wait_terminal(client, accepted["job_id"])
    url = f"/buckets/jobs/{job['job_id']}/events"
    started = time.monotonic()
    async with client.stream("GET", url) as response:
        got = [m async for m in messages(response) if "comment" not in m]
    assert time.monotonic() - started < 10  # at once, not after a poll, heartbeat or lifetime
    assert [(m["event"], m["data"]) for m in got] == [("completed", job)]

    # An EventSource reconnecting after the end is told to stop (204).
    again = await client.get(url, headers={"Last-Event-ID": got[0]["id"]})
    assert again.status_code == 204


async def test_unknown_job_is_404_and_a_malformed_id_is_422(client: httpx.AsyncClient) -> None:
    unknown = await client.get(f"/buckets/jobs/{uuid.uuid4()}/events")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.json()["detail"].startswith("no job ")
    malformed = await client.get("/buckets/jobs/not-a-uuid/events")
    assert malformed.status_code == 422
    assert "job_id" in malformed.json()["detail"]


async def test_database_outage_mid_stream_keeps_the_stream_alive_until_it_returns(
    stack: Stack, client: httpx.AsyncClient, db_proxy: TcpProxy, stack_chain: StackChain
) -> None:
    stack.stop("executor")
    accepted = (await client.post("/buckets", json={"bucket_name": unique_name("dark")})).json()
    url = f"/buckets/jobs/{accepted['job_id']}/events"
    async with client.stream("GET", url) as response:
        stream = messages(response)
        first, _ = await next_event(stream)
        assert first["event"] == "queued"
        db_proxy.cut()
        try:
            beats = 0
            async with asyncio.timeout(3):  # heartbeats go on, and nothing else is sent
                while beats < 3:
                    message = await anext(stream)
                    assert "comment" in message, message
                    beats += 1
        finally:
            db_proxy.restore()
        with stack_chain.not_mining():  # `processing` until its create is mined
            stack.start("executor")
            processing, _ = await next_event(stream, timeout=60)
            assert processing["event"] == "processing"
            await signed(stream, processing)
        completed, _ = await next_event(stream, timeout=60)
        assert completed["event"] == "completed"
    assert "job watch cannot read the database" in stack.logs("api")
