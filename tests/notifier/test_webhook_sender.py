"""One delivery attempt against real HTTP receivers on 127.0.0.1: what each outcome means."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from services.notifier.backoff import Verdict
from services.notifier.sender import attempt, make_client
from services.notifier.store import Claimed
from shared.settings import Settings
from shared.webhook_signing import new_secret
from tests.support.stack import free_port
from tests.support.webhook_receiver import Receiver, Script, readme_verify

SETTINGS = Settings(
    _env_file=None,  # type: ignore[call-arg]
    api_port=free_port(),
    webhook_timeout_s=0.5,
    webhook_deny_targets="",
)
SECRET = new_secret()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(SETTINGS) as http:
        yield http


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    script: Script = getattr(request, "param", lambda n: (200, 0.0))
    running = Receiver(script)
    yield running
    running.close()


def claimed(url: str) -> Claimed:
    return Claimed(
        uuid.uuid4(), uuid.uuid4(), "event-1", '{"type":"BucketCreated"}', 1, url, SECRET
    )


async def test_2xx_succeeds_with_a_verifiable_signature(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    delivery = claimed(receiver.url)
    outcome = await attempt(client, delivery, SETTINGS)
    assert outcome.verdict is Verdict.SUCCEEDED and outcome.status_code == 200
    [request] = receiver.received()
    readme_verify()(SECRET, request.headers, request.body)
    assert request.headers["webhook-id"] == str(delivery.id)
    assert request.headers["content-type"] == "application/json"
    assert request.body == delivery.payload.encode()


@pytest.mark.parametrize("receiver", [lambda n: (200, 2.0)], indirect=True)
async def test_no_answer_within_the_timeout_is_retried(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    outcome = await attempt(client, claimed(receiver.url), SETTINGS)
    assert outcome.verdict is Verdict.RETRY and "no answer within 0.5 s" in (outcome.error or "")


@pytest.mark.parametrize("receiver", [lambda n: (302, 0.0, {"Location": "/x"})], indirect=True)
async def test_a_redirect_is_not_followed(client: httpx.AsyncClient, receiver: Receiver) -> None:
    outcome = await attempt(client, claimed(receiver.url), SETTINGS)
    assert outcome.verdict is Verdict.RETRY and outcome.status_code == 302
    assert len(receiver.received()) == 1


@pytest.mark.parametrize("receiver", [lambda n: (503, 0.0, {"Retry-After": "7"})], indirect=True)
async def test_retry_after_of_a_503_is_reported(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    outcome = await attempt(client, claimed(receiver.url), SETTINGS)
    assert (outcome.verdict, outcome.status_code, outcome.retry_after_s) == (Verdict.RETRY, 503, 7)


async def test_connection_refused_is_retried(client: httpx.AsyncClient) -> None:
    outcome = await attempt(client, claimed(f"http://127.0.0.1:{free_port()}/"), SETTINGS)
    assert outcome.verdict is Verdict.RETRY and outcome.status_code is None


async def test_a_host_that_does_not_resolve_now_is_retried(client: httpx.AsyncClient) -> None:
    outcome = await attempt(client, claimed("http://no-such-host.invalid/"), SETTINGS)
    assert outcome.verdict is Verdict.RETRY and "does not resolve" in (outcome.error or "")


async def test_the_gateway_itself_is_never_called(client: httpx.AsyncClient) -> None:
    url = f"http://localhost:{SETTINGS.api_port}/buckets"
    outcome = await attempt(client, claimed(url), SETTINGS)
    assert outcome.verdict is Verdict.FAILED and "refused" in (outcome.error or "")
