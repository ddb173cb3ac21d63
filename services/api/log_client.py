"""The API's connection to the log: appends events and reads end offsets.

Clients start lazily and are replaced after a failure, so the API comes up while Kafka is down
and recovers by itself when it returns; every call is bounded so callers can answer 503 fast.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.events import Event
from shared.kafka import Appender, make_consumer
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class LogUnavailable(Exception):
    """The log could not take or answer a request within the time allowed."""


class LogClient:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.bucket_events_topic
        self._settings = settings
        self._timeout = settings.append_timeout_s
        self._appender = Appender(settings)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _bounded(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._timeout):  # unlike wait_for, no task per call
                return await call()
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("log unavailable", extra={"operation": what, "error": repr(exc)})
            raise LogUnavailable(f"the event log did not answer ({what})") from exc

    async def append(self, event: Event) -> tuple[int, int]:
        """Append and wait for the broker's acknowledgement; (partition, offset)."""
        return await self._bounded("append", lambda: self._appender.append(self._topic, event))

    async def end_offsets(self) -> dict[int, int]:
        """The current end offset of every partition of the event topic."""

        async def go() -> dict[int, int]:
            partitions = await self._appender.partitions_for(self._topic)
            consumer = await self._offsets_reader()
            try:
                ends = await consumer.end_offsets(
                    [TopicPartition(self._topic, p) for p in partitions]
                )
            except (KafkaError, OSError):
                await self._drop_reader(consumer)
                raise
            return {tp.partition: offset for tp, offset in ends.items()}

        return await self._bounded("end offsets", go)

    async def check(self) -> None:
        """Raise `LogUnavailable` unless a broker answers a metadata request now."""
        await self._bounded("health", self._appender.ping)

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
