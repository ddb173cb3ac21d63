"""The API's connection to the log: appends events and reads end offsets.

Clients start lazily and are replaced after a failure, so the API comes up while Kafka is down
and recovers by itself when it returns; every call is bounded so callers can answer 503 fast.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.api.errors import LogUnavailable
from services.api.timeouts import bounded
from shared.events import Event
from shared.kafka import Appender, make_consumer
from shared.settings import Settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
# After a failure the log counts as down this long: calls fail at once instead of each
# waiting out its timeout, then one call at a time tries the broker again. Without it a
# crowd of retrying clients kept hundreds of doomed appends (and producer restarts) in
# flight during a Kafka outage, and answers took up to 11 s (found by the fault suite).
DOWN_FOR_S = 1.0


def _guarded(
    what: str,
) -> Callable[
    [Callable[Concatenate[LogClient, P], Awaitable[R]]],
    Callable[Concatenate[LogClient, P], Awaitable[R]],
]:
    """A call to the broker, as `LogUnavailable` when it fails or the log is known down."""

    def wrap(
        method: Callable[Concatenate[LogClient, P], Awaitable[R]],
    ) -> Callable[Concatenate[LogClient, P], Awaitable[R]]:
        @functools.wraps(method)
        async def call(self: LogClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
            self.raise_if_down(what)
            trial = self._down_until is not None
            if trial:
                self._trying = True
            try:
                result = await method(self, *args, **kwargs)
            except (TimeoutError, KafkaError, OSError) as exc:
                self._down_until = asyncio.get_running_loop().time() + DOWN_FOR_S
                log.warning("log unavailable", extra={"operation": what, "error": repr(exc)})
                raise LogUnavailable(f"the event log did not answer ({what})") from exc
            finally:
                if trial:
                    self._trying = False
            self._down_until = None
            return result

        return call

    return wrap


class LogClient:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.bucket_events_topic
        self._settings = settings
        self._timeout = settings.append_timeout_s
        self._appender = Appender(settings)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._down_until: float | None = None  # loop time; None while the log answers
        self._trying = False  # a call is finding out whether a down log is back

    def raise_if_down(self, what: str = "write") -> None:
        """Fail at once while the log is known down: callers skip their other work too."""
        down_until = self._down_until
        if down_until is not None and (
            asyncio.get_running_loop().time() < down_until or self._trying
        ):
            raise LogUnavailable(f"the event log is down ({what} not tried)")

    @_guarded("append")
    @bounded
    async def append(self, event: Event) -> tuple[int, int]:
        """Append and wait for the broker's acknowledgement; (partition, offset)."""
        return await self._appender.append(self._topic, event)

    @_guarded("end offsets")
    @bounded
    async def end_offsets(self) -> dict[int, int]:
        """The current end offset of every partition of the event topic."""
        partitions = await self._appender.partitions_for(self._topic)
        consumer = await self._offsets_reader()
        try:
            ends = await consumer.end_offsets([TopicPartition(self._topic, p) for p in partitions])
        except (KafkaError, OSError):
            await self._drop_reader(consumer)
            raise
        return {tp.partition: offset for tp, offset in ends.items()}

    @_guarded("health")
    @bounded
    async def check(self) -> None:
        """Raise `LogUnavailable` unless a broker answers a metadata request now."""
        await self._appender.ping()

    async def _offsets_reader(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._consumer is None:
                consumer = make_consumer(self._settings)
                await consumer.start()
                self._consumer = consumer
            return self._consumer

    async def _drop_reader(self, consumer: AIOKafkaConsumer) -> None:
        async with self._lock:
            current = self._consumer is consumer
            if current:
                self._consumer = None
        if current:
            await consumer.stop()

    async def close(self) -> None:
        await self._appender.stop()
        async with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
