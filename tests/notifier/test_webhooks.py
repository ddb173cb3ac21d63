"""Webhooks end to end: the API, the notifier process, real Kafka, real Postgres, real HTTP
receivers on 127.0.0.1 in the test process, and the executor on an anvil chain of the module's
own (0.25 s blocks, our contract)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from sqlalchemy import text

from shared.db import make_engine
from shared.dead_letter import CONSUMER, ORIGIN_OFFSET, ORIGIN_PARTITION
from shared.errors import MalformedEvent, UnknownEventType
from shared.events import Event, decode
from shared.kafka import Appender, make_consumer
from tests.faults.test_poison_records import POISON, UNKNOWN_TYPE
from tests.support.evm_stack import StackChain
from tests.support.stack import Stack, read_events, unique_name
from tests.support.webhook_receiver import Receiver, Script, readme_verify

pytestmark = pytest.mark.slow

# Short retries so a test sees several attempts in about a second.
STACK_SETTINGS = {
    "webhook_timeout_s": 1.5,
    "webhook_retry_base_s": 0.3,
    "webhook_retry_max_s": 1.0,
    "webhook_retry_jitter": 0.2,
    "webhook_max_attempts": 4,
    "webhook_poll_interval_s": 0.2,
    "notifier_session_timeout_ms": 6000,
    "chain_insufficient_funds_wait_s": 1.0,
}
STACK_CHAIN = {"block_time": 0.25}  # a job fails for real: the key without funds
DEADLINE_S = 30.0


@pytest.fixture(scope="module", autouse=True)
def notifier(stack: Stack) -> Iterator[None]:
    stack.start("notifier")
    yield


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(script: Script = lambda n: (200, 0.0)) -> Receiver:
        started.append(Receiver(script))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


async def register(client: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/webhooks", json={"url": url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_job(client: httpx.AsyncClient, name: str | None = None) -> str:
    response = await client.post("/buckets", json={"bucket_name": name or unique_name("wh")})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def deliveries(
    client: httpx.AsyncClient, webhook_id: str, status: str | None = None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"status": status} if status else {})}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"/webhooks/{webhook_id}/deliveries", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def eventually(
    check: Callable[[], Awaitable[bool]], stack: Stack, what: str, timeout: float = DEADLINE_S
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.logs('notifier')}")
        stack.assert_alive()
        await asyncio.sleep(0.05)


async def settled(client: httpx.AsyncClient, webhook_id: str, count: int) -> bool:
    found = await deliveries(client, webhook_id)
    return len(found) >= count and all(d["status"] != "pending" for d in found)


async def test_job_outcome_is_delivered_signed_and_verifiable(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    webhook = await register(client, receiver.url)
    assert webhook["secret"].startswith("whsec_")
    assert webhook["event_types"] == ["BucketCreated", "BucketFailed"]
    job_id = await create_job(client)

    await eventually(lambda: settled(client, webhook["id"], 1), stack, "the delivery")
    [request] = receiver.received()
    readme_verify()(webhook["secret"], request.headers, request.body)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    event = json.loads(request.body)
    assert event["type"] == "BucketCreated" and event["data"]["job_id"] == job_id
    assert event["specversion"] == "1.0" and event["data"]["tx_hash"].startswith("0x")
    delivery_id = str(uuid.uuid5(uuid.UUID(webhook["id"]), event["id"]))
    assert request.headers["webhook-id"] == delivery_id

    logged = (await client.get(f"/webhooks/deliveries/{delivery_id}")).json()
    assert logged["status"] == "succeeded" and logged["attempts"] == 1
    assert logged["last_status_code"] == 200 and logged["last_error"] is None
    assert logged["job_id"] == job_id and logged["event_type"] == "BucketCreated"
    assert logged["event_id"] == event["id"] and logged["delivered_at"] is not None

    listed = (await client.get("/webhooks", params={"limit": 1000})).json()["items"]
    one = (await client.get(f"/webhooks/{webhook['id']}")).json()
    assert [w for w in listed if w["id"] == webhook["id"]] == [one]
    assert "secret" not in one and webhook["secret"] not in json.dumps(listed)
    assert webhook["secret"] not in stack.logs(tail=100_000)


async def test_receiver_failing_twice_then_succeeding_gets_three_attempts(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(lambda n: (500, 0.0) if n < 2 else (200, 0.0))
    secret = "whsec_" + "A" * 32
    webhook = await register(client, receiver.url, secret=secret)
    assert webhook["secret"] == secret
    await create_job(client)

    await eventually(lambda: settled(client, webhook["id"], 1), stack, "the third attempt")
    [logged] = await deliveries(client, webhook["id"])
    assert logged["status"] == "succeeded" and logged["attempts"] == 3, logged
    assert logged["last_status_code"] == 200
    requests = receiver.received()
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {logged["delivery_id"]}
    for request in requests:
        readme_verify()(secret, request.headers, request.body)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert gaps[0] >= 0.3 * 0.8 - 0.05 and gaps[1] >= 0.6 * 0.8 - 0.05, gaps  # backoff grows
    assert await deliveries(client, webhook["id"], "failed") == []
    assert len(await deliveries(client, webhook["id"], "succeeded")) == 1


async def test_retry_after_of_a_429_is_honoured(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(lambda n: (429, 0.0, {"Retry-After": "1"}) if n == 0 else (200, 0.0))
    webhook = await register(client, receiver.url)
    await create_job(client)

    await eventually(lambda: settled(client, webhook["id"], 1), stack, "the retried delivery")
    [logged] = await deliveries(client, webhook["id"])
    assert logged["status"] == "succeeded" and logged["attempts"] == 2, logged
    first, second = receiver.received()
    assert second.at - first.at >= 0.95  # not the 0.3 s backoff of this module


async def test_slow_receiver_does_not_delay_another_webhook(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    slow = receivers(lambda n: (200, 3.0))  # longer than WEBHOOK_TIMEOUT_S: every try times out
    fast = receivers()
    slow_hook = await register(client, slow.url, event_types=["BucketCreated"])
    fast_hook = await register(client, fast.url, event_types=["BucketCreated"])
    jobs = [await create_job(client) for _ in range(3)]

    await eventually(lambda: settled(client, fast_hook["id"], 3), stack, "the fast deliveries")
    fast_at = {json.loads(r.body)["data"]["job_id"]: r.at for r in fast.received()}
    slow_first: dict[str, float] = {}
    for request in slow.received():
        slow_first.setdefault(json.loads(request.body)["data"]["job_id"], request.at)
    assert sorted(fast_at) == sorted(jobs) and sorted(slow_first) == sorted(jobs)
    for job in jobs:  # never waited for the slow receiver's 1.5 s attempts or their retries
        assert fast_at[job] - slow_first[job] < 1.0, (fast_at, slow_first)
    pending = await deliveries(client, slow_hook["id"], "pending")
    failed = await deliveries(client, slow_hook["id"], "failed")
    assert len(pending) + len(failed) == 3
    assert all(d["last_error"] is None or "no answer" in d["last_error"] for d in pending + failed)
    assert (await client.delete(f"/webhooks/{slow_hook['id']}")).status_code == 204


async def test_4xx_receiver_fails_at_once_without_retries(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(lambda n: (410, 0.0))
    webhook = await register(client, receiver.url)
    await create_job(client)

    await eventually(lambda: settled(client, webhook["id"], 1), stack, "the failed delivery")
    [logged] = await deliveries(client, webhook["id"], "failed")
    assert logged["attempts"] == 1 and logged["last_status_code"] == 410
    assert "410" in logged["last_error"] and logged["next_attempt_at"] is None
    await asyncio.sleep(1.5)  # longer than every retry delay of this module
    assert len(receiver.received()) == 1


async def test_deleted_webhook_gets_no_more_deliveries(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    gone, failing, control = receivers(), receivers(lambda n: (503, 0.0)), receivers()
    gone_hook = await register(client, gone.url)
    failing_hook = await register(client, failing.url)
    control_hook = await register(client, control.url)
    assert (await client.delete(f"/webhooks/{gone_hook['id']}")).status_code == 204
    assert (await client.get(f"/webhooks/{gone_hook['id']}")).status_code == 404
    assert (await client.delete(f"/webhooks/{gone_hook['id']}")).status_code == 404
    assert (await client.get(f"/webhooks/{gone_hook['id']}/deliveries")).status_code == 404
    await create_job(client)

    await eventually(lambda: settled(client, control_hook["id"], 1), stack, "the control")
    await eventually(lambda: _received(failing, 1), stack, "the first failing attempt")
    [retrying] = await deliveries(client, failing_hook["id"])
    assert (await client.delete(f"/webhooks/{failing_hook['id']}")).status_code == 204
    seen = len(failing.received())
    await asyncio.sleep(1.5)  # longer than every retry delay of this module
    assert len(failing.received()) <= seen + 1  # at most the attempt in flight at the delete
    after = (await client.get(f"/webhooks/deliveries/{retrying['delivery_id']}")).json()
    assert after["status"] == "failed" and "deleted" in after["last_error"], after
    assert gone.received() == []
    listed = (await client.get("/webhooks", params={"limit": 1000})).json()["items"]
    assert not {gone_hook["id"], failing_hook["id"]} & {w["id"] for w in listed}


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.received()) >= count


async def test_event_type_filter_is_honoured(
    stack: Stack,
    client: httpx.AsyncClient,
    receivers: Callable[..., Receiver],
    stack_chain: StackChain,
) -> None:
    only_failed, both = receivers(), receivers()
    failed_hook = await register(client, only_failed.url, event_types=["BucketFailed"])
    both_hook = await register(client, both.url)
    assert failed_hook["event_types"] == ["BucketFailed"]
    ok_job = await create_job(client)
    assert (await stack.wait_terminal(client, ok_job))["status"] == "completed"
    with stack_chain.unfunded():
        doomed_job = await create_job(client, unique_name("doomed"))
        assert (await stack.wait_terminal(client, doomed_job))["status"] == "failed"

    await eventually(lambda: settled(client, both_hook["id"], 2), stack, "both outcomes")
    outcomes = {d["job_id"]: d["event_type"] for d in await deliveries(client, both_hook["id"])}
    assert outcomes == {ok_job: "BucketCreated", doomed_job: "BucketFailed"}
    [only] = await deliveries(client, failed_hook["id"])
    assert only["event_type"] == "BucketFailed" and only["job_id"] == doomed_job
    assert [json.loads(r.body)["type"] for r in only_failed.received()] == ["BucketFailed"]


async def test_own_services_are_refused_and_bad_bodies_get_4xx(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    settings = stack.settings
    kafka = settings.kafka_bootstrap_servers.split(",")[0]
    database = settings.database_url.split("@", 1)[1].split("/", 1)[0]
    own = [
        f"http://{settings.api_host}:{settings.api_port}/hook",
        f"http://localhost:{settings.api_port}/hook",
        f"http://127.0.0.2:{settings.api_port}/hook",
        f"http://0.0.0.0:{settings.api_port}/hook",
        f"http://[::1]:{settings.api_port}/hook",
        f"http://{kafka}/",
        f"http://{database}/",
        "http://169.254.169.254/latest/meta-data/",
    ]
    for url in own:
        response = await client.post("/webhooks", json={"url": url})
        assert response.status_code == 422, (url, response.text)
        assert "may not target the gateway" in response.json()["detail"]

    bad_bodies: list[Any] = [
        {},
        {"url": "ftp://example.com/"},
        {"url": "http://user:pw@example.com/"},
        {"url": "example.com/hook"},
        {"url": "https://example.com/" + "a" * 2100},
        {"url": "http://no-such-host.invalid/"},
        {"url": 5},
        {"url": None},
        {"url": "http://example.com/", "event_types": []},
        {"url": "http://example.com/", "event_types": ["BucketRequested"]},
        {"url": "http://example.com/", "event_types": "BucketCreated"},
        {"url": "http://example.com/", "secret": "hunter2"},
        {"url": "http://example.com/", "secret": "whsec_" + "A" * 8},
        {"url": "http://example.com/", "colour": "red"},
        [],
        "http://example.com/",
    ]
    for body in bad_bodies:
        response = await client.post("/webhooks", json=body)
        assert response.status_code == 422, (body, response.text)
    assert (await client.post("/webhooks", content=b"{nope", headers=_JSON)).status_code == 422
    assert (await client.post("/webhooks", content=b"url=x")).status_code == 415
    for path, params in [
        ("/webhooks/not-a-uuid", {}),
        ("/webhooks/deliveries/not-a-uuid", {}),
        ("/webhooks", {"limit": 0}),
        ("/webhooks", {"cursor": "garbage!"}),
        (f"/webhooks/{uuid.uuid4()}/deliveries", {"status": "lost"}),
    ]:
        assert (await client.get(path, params=params)).status_code == 422, path
    assert (await client.get(f"/webhooks/{uuid.uuid4()}")).status_code == 404
    assert (await client.get(f"/webhooks/deliveries/{uuid.uuid4()}")).status_code == 404
    assert (await client.delete(f"/webhooks/{uuid.uuid4()}")).status_code == 404


_JSON = {"content-type": "application/json"}


async def test_malformed_records_are_parked_unknown_skipped_and_deliveries_go_on(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    webhook = await register(client, receiver.url)
    name = unique_name("after-poison")
    appender = Appender(stack.settings)
    try:
        poison = [
            await appender.send(stack.settings.bucket_events_topic, value, name.encode())
            for value in [*POISON, UNKNOWN_TYPE]
        ][: len(POISON)]
    finally:
        await appender.stop()
    job_id = await create_job(client, name)

    await eventually(lambda: settled(client, webhook["id"], 1), stack, "the delivery")
    [logged] = await deliveries(client, webhook["id"])
    assert logged["job_id"] == job_id and logged["status"] == "succeeded"
    parked = await read_events(stack.settings, stack.settings.dead_letter_topic)
    by_notifier = sorted(
        (int(h[ORIGIN_PARTITION]), int(h[ORIGIN_OFFSET]))
        for h in ({k: v.decode() for k, v in r.headers} for r in parked)
        if h[CONSUMER] == "notifier"
    )
    assert by_notifier == sorted(poison)


async def test_sigkilled_notifier_rereading_the_log_duplicates_no_delivery(
    stack: Stack, client: httpx.AsyncClient, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(lambda n: (200, 0.3))
    webhook = await register(client, receiver.url)
    jobs = [await create_job(client) for _ in range(6)]
    await eventually(lambda: _received(receiver, 1), stack, "the first delivery")
    stack.kill("notifier")  # mid-run: some attempts in flight, their outcome never recorded

    # A new consumer group reads the whole log again: every event is re-consumed, far more
    # than a crash between storing deliveries and committing offsets can cause.
    group = stack.settings.notifier_group_id + "-again"
    stack.settings = stack.settings.model_copy(update={"notifier_group_id": group})
    stack.start("notifier")
    await eventually(lambda: settled(client, webhook["id"], 6), stack, "every delivery")
    await eventually(lambda: _group_at_end(stack, group), stack, "the re-read of the whole log")

    logged = await deliveries(client, webhook["id"])
    assert len(logged) == 6 and {d["status"] for d in logged} == {"succeeded"}
    assert sorted(d["job_id"] for d in logged) == sorted(jobs)
    created = [
        e
        for e in _readable(await read_events(stack.settings))
        if e.type == "BucketCreated" and str(e.job_id) in jobs
    ]
    assert sorted(d["event_id"] for d in logged) == sorted(e.id for e in created)
    ids = [r.headers["webhook-id"] for r in receiver.received()]
    assert set(ids) == {d["delivery_id"] for d in logged}  # duplicates only of the same id
    for d in logged:  # a repeat only for an attempt the log counts (the one cut by the kill)
        assert 1 <= ids.count(d["delivery_id"]) <= d["attempts"], (d, ids)
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows, pairs = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT (subscription_id, event_id))"
                        " FROM webhook_deliveries"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert rows == pairs and rows > 6, (rows, pairs)  # every webhook of this module, re-read
    assert stack.stop("notifier") == {"notifier": 0}  # SIGTERM: a clean stop


async def _group_at_end(stack: Stack, group: str) -> bool:
    """Whether `group` has committed every partition of the topic up to its end."""
    topic = stack.settings.bucket_events_topic
    appender = Appender(stack.settings)
    try:
        partitions = [TopicPartition(topic, p) for p in await appender.partitions_for(topic)]
    finally:
        await appender.stop()
    consumer = make_consumer(stack.settings, group_id=group)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        committed = {tp: await consumer.committed(tp) or 0 for tp in partitions}
        return all(committed[tp] >= end for tp, end in ends.items())
    finally:
        await consumer.stop()


def _readable(records: list[Any]) -> list[Event]:
    events = []
    for record in records:
        try:
            events.append(decode(record.value))
        except (MalformedEvent, UnknownEventType):
            continue  # the poison records of the test above
    return events
