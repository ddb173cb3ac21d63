"""The API's connection to the log: appends events and reads end offsets.

Clients start lazily and restart after a failure, so the API comes up while Kafka is down and
recovers by itself when it returns; every call is bounded so callers can answer 503 quickly.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared.events import Event
from shared.kafka import append, make_consumer, make_producer
from shared.settings import Settings

log = logging.getLogger(__name__)


class LogUnavailable(Exception):
    """The log could not take or answer a request within the time allowed."""


class LogClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.append_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        async with self._lock:
            if self._producer is None or self._consumer is None:
                producer = make_producer(self._settings)
                consumer = make_consumer(self._settings)
                try:
                    await producer.start()
                    await consumer.start()
                except BaseException:
                    await _quietly(producer.stop())
                    await _quietly(consumer.stop())
                    raise
                self._producer, self._consumer = producer, consumer
            return self._producer, self._consumer

    async def _bounded(self, what: str, coro_fn: Any) -> Any:
        try:
            return await asyncio.wait_for(coro_fn(), self._timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("log unavailable", extra={"operation": what, "error": repr(exc)})
            raise LogUnavailable(f"the event log did not answer ({what})") from exc

    async def append(self, event: Event) -> tuple[int, int]:
        """Append and wait for the broker's acknowledgement; (partition, offset)."""

        async def go() -> tuple[int, int]:
            producer, _ = await self._clients()
            return await append(producer, self._settings.bucket_events_topic, event)

        result: tuple[int, int] = await self._bounded("append", go)
        return result

    async def end_offsets(self) -> dict[int, int]:
        """The current end offset of every partition of the event topic."""

        async def go() -> dict[int, int]:
            producer, consumer = await self._clients()
            topic = self._settings.bucket_events_topic
            partitions = await producer.partitions_for(topic)
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return {tp.partition: offset for tp, offset in ends.items()}

        result: dict[int, int] = await self._bounded("end offsets", go)
        return result

    async def check(self) -> None:
        """Raise `LogUnavailable` unless a broker answers a metadata request now."""

        async def go() -> None:
            producer, _ = await self._clients()
            await producer.client.fetch_all_metadata()

        await self._bounded("health", go)

    async def close(self) -> None:
        async with self._lock:
            for client in (self._producer, self._consumer):
                if client is not None:
                    await _quietly(client.stop())
            self._producer = self._consumer = None


async def _quietly(stopping: Any) -> None:
    try:
        await stopping
    except Exception:  # closing a client that never connected may fail; nothing to do
        log.debug("client stop failed", exc_info=True)
