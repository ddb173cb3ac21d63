"""The faults, each injected once mid-load: kill a service, stop a dependency, cut the chain
RPC, poison the topic, kill or stop brokers of a three-broker cluster.

A fault returns its `Window`: when the harm began and when the repair was done (the service
or dependency back), which the checks use to judge the API's answers and time the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from localinfra.anvil import LocalAnvil
from localinfra.kafka import LocalKafka
from localinfra.kafka_cluster import LocalKafkaCluster
from localinfra.postgres import PrivatePostgres
from shared.kafka import Appender, make_consumer
from shared.settings import Settings
from tests.support.stack import Stack
from tests.support.tcp_proxy import TcpProxy
from tests.support.topic_layout import Layout, layout
from tests.support.topic_offsets import end_offsets

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

# A killed broker's partitions get a new leader once the controller fences it (the brokers'
# session timeout, 4 s in localinfra): waiting for that is bounded by this.
LEADER_MOVE_WAIT_S = 30.0


@dataclass(frozen=True)
class Window:
    began: float  # time.monotonic()
    repaired: float
    api_down: bool = False  # the API process itself was gone: no answer is expected then
    poison_offsets: tuple[tuple[int, int], ...] = ()  # (partition, offset) of unreadable ones
    killed: str | None = None  # the service killed
    in_flight_at_kill: int | None = None  # our transactions in the mempool at an executor kill
    layout: Layout | None = None  # the event topic on the cluster when the fault struck
    brokers_down: tuple[int, ...] = ()  # the cluster's brokers the fault killed or stopped
    busiest: int | None = None  # the event topic's partition with the most records
    leader_after: int | None = None  # the busiest partition's leader once it moved, if it did
    degraded_at: float | None = None  # from then on fewer brokers ran than writes need
    in_sync_after: tuple[int, ...] = ()  # the busiest partition's in-sync replicas at the end
    # the event topic's end offsets as the lone broker told them when it became the only one,
    # and again just before the others were started (a partition None: no leader answered)
    ends_degraded: dict[int, int | None] | None = None
    ends_before_repair: dict[int, int | None] | None = None


@dataclass
class Target:
    """What a fault can act on."""

    stack: Stack
    kafka: LocalKafka
    cluster: LocalKafkaCluster | None  # for the scenarios that run on three brokers
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


async def _busiest_partition(target: Target) -> tuple[int, Layout]:
    """The event topic's partition holding the most records, and the topic's layout now."""
    ends = await end_offsets(target.settings)
    busiest = max(sorted(ends), key=lambda p: ends[p])
    return busiest, await layout(target.settings)


def _cluster(target: Target) -> LocalKafkaCluster:
    assert target.cluster is not None, "the scenario must run on the three-broker cluster"
    return target.cluster


async def kill_busiest_leader(target: Target) -> Window:
    """SIGKILL the broker leading the event topic's busiest partition; once another in-sync
    replica leads it (or LEADER_MOVE_WAIT_S passed) and the outage length is over, start the
    broker again on its data and wait until it is back in that partition's in-sync set."""
    cluster = _cluster(target)
    busiest, before = await _busiest_partition(target)
    leader = before.leader_of(busiest)
    began = time.monotonic()
    await asyncio.to_thread(cluster.node(leader).kill)
    moved = await _leader_moved(target, busiest, leader)
    await asyncio.sleep(max(0.0, began + target.outage_s - time.monotonic()))
    await asyncio.to_thread(cluster.start, [leader])
    repaired = time.monotonic()
    in_sync = await _in_sync(target, busiest, want=len(cluster.nodes))
    return Window(
        began,
        repaired,
        killed=f"broker {leader}",
        layout=before,
        brokers_down=(leader,),
        busiest=busiest,
        leader_after=moved,
        in_sync_after=in_sync,
    )


async def stop_two_brokers(target: Target) -> Window:
    """Stop (cleanly, one after the other) the busiest partition's leader and one more broker:
    one broker is left, fewer than min.insync.replicas, so every write must be refused. After
    the outage length, start both again together (a quorum of controllers needs two)."""
    cluster = _cluster(target)
    busiest, before = await _busiest_partition(target)
    leader = before.leader_of(busiest)
    other = next(n for n in sorted(cluster.nodes) if n != leader)
    began = time.monotonic()
    for node in (leader, other):
        await asyncio.to_thread(cluster.node(node).stop)
    degraded_at = time.monotonic()
    ends_degraded = await _ends_or_none(target)
    await asyncio.sleep(max(0.0, degraded_at + target.outage_s - time.monotonic()))
    ends_before_repair = await _ends_or_none(target)
    await asyncio.to_thread(cluster.start, [leader, other])
    repaired = time.monotonic()
    in_sync = await _in_sync(target, busiest, want=len(cluster.nodes))
    return Window(
        began,
        repaired,
        layout=before,
        brokers_down=(leader, other),
        busiest=busiest,
        degraded_at=degraded_at,
        in_sync_after=in_sync,
        ends_degraded=ends_degraded,
        ends_before_repair=ends_before_repair,
    )


async def _ends_or_none(target: Target, bound_s: float = 3.0) -> dict[int, int | None]:
    """Each partition's end offset as its leader tells it; None for a partition whose leader
    does not answer within `bound_s` (none elected: no one can write to it either)."""
    topic = target.settings.bucket_events_topic
    consumer = make_consumer(target.settings, isolation_level="read_uncommitted")
    ends: dict[int, int | None] = dict.fromkeys(range(target.settings.topic_partitions))
    unanswered = (KafkaError, OSError, TimeoutError)
    try:
        with contextlib.suppress(*unanswered):
            await asyncio.wait_for(consumer.start(), bound_s * 3)
            for partition in ends:
                tp = TopicPartition(topic, partition)
                with contextlib.suppress(*unanswered):
                    answer = await asyncio.wait_for(consumer.end_offsets([tp]), bound_s)
                    ends[partition] = answer[tp]
    finally:
        await consumer.stop()
    return ends


async def _leader_moved(target: Target, partition: int, old: int) -> int | None:
    """The partition's new leader, once the cluster names one other than `old`."""
    deadline = time.monotonic() + LEADER_MOVE_WAIT_S
    while time.monotonic() < deadline:
        try:
            leader = (await layout(target.settings)).leader_of(partition)
        except (KafkaError, OSError, TimeoutError):  # the broker asked was the dead one
            leader = old
        if leader not in (old, -1):
            return leader
        await asyncio.sleep(0.2)
    return None


async def _in_sync(target: Target, partition: int, want: int) -> tuple[int, ...]:
    """The partition's in-sync replicas once `want` of them are (bounded by
    LEADER_MOVE_WAIT_S): a restarted broker has caught up."""
    deadline = time.monotonic() + LEADER_MOVE_WAIT_S
    in_sync: tuple[int, ...] = ()
    while time.monotonic() < deadline:
        found = await layout(target.settings)
        in_sync = next(p.in_sync for p in found.partitions if p.partition == partition)
        if len(in_sync) >= want:
            break
        await asyncio.sleep(0.2)
    return in_sync
