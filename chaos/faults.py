"""The faults, each injected once mid-load: kill a service, stop a dependency, poison the topic.

A fault returns its `Window`: when the harm began and when the repair was done (the service
or dependency back), which the checks use to judge the API's answers and time the recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from localinfra.kafka import LocalKafka
from localinfra.postgres import PrivatePostgres
from shared.kafka import Appender
from shared.settings import Settings
from tests.support.stack import Stack

KILL_PAUSE_S = 2.0  # a killed service stays dead this long before its restart

# Poison for the topic. Bad JSON and a future schema version are unreadable (parked in the
# dead-letter topic by every consumer); an unknown type is a newer producer's event (skipped).
BAD_JSON = b'{"specversion":"1.0","type":"BucketRequested",'
WRONG_VERSION = (
    b'{"specversion":"1.0","id":"p1","source":"/chaos","type":"BucketRequested",'
    b'"subject":"poison-bucket","time":"2026-01-01T00:00:00Z","schemaversion":99,'
    b'"data":{"job_id":"5f0c1a52-3e2b-4c8e-9a55-0d4b7a0f3c11","bucket_name":"poison-bucket"}}'
)
UNKNOWN_TYPE = (
    b'{"specversion":"1.0","id":"p2","source":"/chaos","type":"BucketRenamed",'
    b'"subject":"poison-bucket","time":"2026-01-01T00:00:00Z","schemaversion":1,'
    b'"data":{"job_id":"5f0c1a52-3e2b-4c8e-9a55-0d4b7a0f3c11","bucket_name":"poison-bucket"}}'
)
UNREADABLE = (BAD_JSON, WRONG_VERSION)


@dataclass(frozen=True)
class Window:
    began: float  # time.monotonic()
    repaired: float
    api_down: bool = False  # the API process itself was gone: no answer is expected then
    poison_offsets: tuple[tuple[int, int], ...] = ()  # (partition, offset) of unreadable ones


@dataclass
class Target:
    """What a fault can act on."""

    stack: Stack
    kafka: LocalKafka
    postgres: PrivatePostgres
    settings: Settings
    outage_s: float


Fault = Callable[[Target], Awaitable[Window]]


def kill_and_restart(service: str) -> Fault:
    async def fault(target: Target) -> Window:
        began = time.monotonic()
        target.stack.kill(service)
        await asyncio.sleep(KILL_PAUSE_S)
        await asyncio.to_thread(target.stack.start, service)  # the api waits until healthy
        return Window(began, time.monotonic(), api_down=service == "api")

    return fault


def kill_for_good(service: str, *, after_log: str | None = None, wait_s: float = 60.0) -> Fault:
    """SIGKILL `service` and leave it dead; with `after_log`, only once its log shows that line
    (bounded by `wait_s`), so the process is known to hold work when it dies: on a quiet machine
    the load can reach its midpoint before a second executor has joined the group."""

    async def fault(target: Target) -> Window:
        if after_log is not None:
            log_file = target.stack.log_dir / f"{service}.log"
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if log_file.exists() and after_log in log_file.read_text(errors="replace"):
                    break
                await asyncio.sleep(0.1)
        began = time.monotonic()
        target.stack.kill(service)
        return Window(began, began)

    return fault


async def stop_kafka(target: Target) -> Window:
    began = time.monotonic()
    await asyncio.to_thread(target.kafka.stop)
    await asyncio.sleep(target.outage_s)
    await asyncio.to_thread(target.kafka.start)
    return Window(began, time.monotonic())


async def stop_postgres(target: Target) -> Window:
    began = time.monotonic()
    await asyncio.to_thread(target.postgres.stop)
    await asyncio.sleep(target.outage_s)
    await asyncio.to_thread(target.postgres.start)
    return Window(began, time.monotonic())


async def inject_poison(target: Target) -> Window:
    began = time.monotonic()
    appender = Appender(target.settings)
    topic = target.settings.bucket_events_topic
    try:
        unreadable = [await appender.send(topic, value, b"poison-bucket") for value in UNREADABLE]
        await appender.send(topic, UNKNOWN_TYPE, b"poison-bucket")
    finally:
        await appender.stop()
    return Window(began, time.monotonic(), poison_offsets=tuple(unreadable))
