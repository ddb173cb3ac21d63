"""The faults, each injected once mid-load: kill a service, stop a dependency, cut the chain
RPC, poison the topic.

A fault returns its `Window`: when the harm began and when the repair was done (the service
or dependency back), which the checks use to judge the API's answers and time the recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from localinfra.anvil import LocalAnvil
from localinfra.kafka import LocalKafka
from localinfra.postgres import PrivatePostgres
from shared.kafka import Appender
from shared.settings import Settings
from tests.support.stack import Stack
from tests.support.tcp_proxy import TcpProxy

KILL_PAUSE_S = 2.0  # a killed service stays dead this long before its restart
# An executor is killed once this many of our transactions wait in the chain's mempool (sent,
# not mined), or after KILL_WAIT_S: the kill then strikes with transactions really in flight.
KILL_IN_FLIGHT = 8
KILL_WAIT_S = 30.0
HOLDS_KEYS = "signer locks held"  # an executor's log line once it holds the key pool's fence

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
    killed: str | None = None  # the service killed
    in_flight_at_kill: int | None = None  # our transactions in the mempool at an executor kill


@dataclass
class Target:
    """What a fault can act on."""

    stack: Stack
    kafka: LocalKafka
    postgres: PrivatePostgres
    chain: LocalAnvil  # the suite's own view of the chain, never through the proxy
    proxy: TcpProxy | None  # between the services and the chain, for the scenarios that cut it
    settings: Settings
    outage_s: float


Fault = Callable[[Target], Awaitable[Window]]


def kill_and_restart(service: str) -> Fault:
    async def fault(target: Target) -> Window:
        in_flight = await _transactions_in_flight(target) if _executor(service) else None
        began = time.monotonic()
        target.stack.kill(service)
        await asyncio.sleep(KILL_PAUSE_S)
        await asyncio.to_thread(target.stack.start, service)  # the api waits until healthy
        return Window(
            began,
            time.monotonic(),
            api_down=service == "api",
            killed=service,
            in_flight_at_kill=in_flight,
        )

    return fault


def kill_signer_for_good(executors: tuple[str, ...], wait_s: float = 60.0) -> Fault:
    """SIGKILL, and leave dead, whichever of `executors` holds the key pool's fence (the others
    are standbys), once its log shows a finished job (bounded by `wait_s`) and transactions
    are in flight: it is known to hold partitions and work when it dies."""

    async def fault(target: Target) -> Window:
        deadline = time.monotonic() + wait_s
        holder = executors[0]
        while time.monotonic() < deadline:
            logs = {name: _log(target, name) for name in executors}
            found = [n for n, text in logs.items() if HOLDS_KEYS in text and "job finished" in text]
            if found:
                holder = found[0]
                break
            await asyncio.sleep(0.1)
        in_flight = await _transactions_in_flight(target)
        began = time.monotonic()
        target.stack.kill(holder)
        return Window(began, began, killed=holder, in_flight_at_kill=in_flight)

    return fault


def _executor(service: str) -> bool:
    return service.partition(":")[0] == "executor"


def _log(target: Target, service: str) -> str:
    log_file = target.stack.log_dir / f"{service}.log"
    return log_file.read_text(errors="replace") if log_file.exists() else ""


async def _transactions_in_flight(target: Target) -> int:
    """Wait (up to KILL_WAIT_S) until KILL_IN_FLIGHT transactions are pending in the chain's
    mempool; the count when it was reached, or the last seen. The executors' keys are the
    only senders on the suite's chain, so every pending transaction is ours."""
    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        status = await asyncio.to_thread(target.chain.rpc, "txpool_status")
        pending = int(status["pending"], 16)
        if pending >= KILL_IN_FLIGHT or time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.02)


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


async def cut_chain_rpc(target: Target) -> Window:
    """The services' chain RPC refused (connections dropped) for the outage length; the
    chain itself goes on mining what was sent."""
    assert target.proxy is not None, "the scenario must put a proxy in front of the chain"
    began = time.monotonic()
    await asyncio.to_thread(target.proxy.cut)
    await asyncio.sleep(target.outage_s)
    await asyncio.to_thread(target.proxy.restore)
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
