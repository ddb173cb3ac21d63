"""With the log down, the API's log client fails fast after the first failure, then recovers.

Against a "broker" that accepts connections and never answers (a hung broker, no fake of
Kafka's behaviour): the first call waits out its timeout; calls in the next second fail at
once instead of each waiting, so a crowd of retrying clients cannot pile up doomed appends.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from services.api import log_client
from services.api.errors import LogUnavailable
from services.api.log_client import LogClient
from shared.events import BucketRequested, new_event
from shared.settings import Settings


def _event() -> object:
    return new_event(BucketRequested(job_id=uuid.uuid4(), bucket_name="down-bucket"), "/test")


async def _fails_within(client: LogClient) -> float:
    started = time.monotonic()
    with pytest.raises(LogUnavailable):
        await client.append(_event())  # type: ignore[arg-type]
    return time.monotonic() - started


async def test_after_one_failure_calls_fail_at_once_until_one_tries_again() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(200)  # the kernel completes handshakes; nobody ever reads or writes
    port = silent.getsockname()[1]
    settings = Settings(
        _env_file=None, kafka_bootstrap_servers=f"127.0.0.1:{port}", append_timeout_s=0.5
    )
    client = LogClient(settings)
    try:
        assert await _fails_within(client) >= 0.4  # the first call really tried
        crowd = await asyncio.gather(*(_fails_within(client) for _ in range(50)))
        assert max(crowd) < 0.1, max(crowd)
        with pytest.raises(LogUnavailable):  # what POST /buckets asks before any other work
            client.raise_if_down()
        health_started = time.monotonic()
        with pytest.raises(LogUnavailable):
            await client.check()
        assert time.monotonic() - health_started < 0.1
        await asyncio.sleep(log_client.DOWN_FOR_S)
        assert await _fails_within(client) >= 0.4  # after the pause one call tries again
    finally:
        await client.close()
        silent.close()


async def test_the_log_answering_again_ends_the_pause(kafka_bootstrap: str) -> None:
    settings = Settings(_env_file=None, kafka_bootstrap_servers=kafka_bootstrap)
    client = LogClient(settings)
    try:
        client._down_until = asyncio.get_running_loop().time() - 0.01  # a failure just expired
        await client.check()
        assert client._down_until is None
        await client.check()
    finally:
        await client.close()
