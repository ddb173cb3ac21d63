"""Consuming the bucket-events topic: sort what was fetched, park what cannot be read, count.

Every consumer of the topic (executor, projector, replay, notifier) reads through this module,
so a record it cannot use is handled one way everywhere (DESIGN invariant 5):

- an event of a known type is handed to the consumer;
- an event of a type this code does not know is skipped and counted (consumers must ignore
  types they do not know: newer producers may add some);
- a record that is not a readable event is parked on the dead-letter topic, counted, and the
  consumer moves on.

`ConsumeStats` is the one set of counter names for all of them; the metrics export uses
exactly these names, so they are stable (docs/architecture.md, "Consuming records").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord

from shared.dead_letter import park
from shared.events import Event, MalformedEvent, UnknownEventType, decode
from shared.kafka import Appender

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
# A record that is parked instead of consumed, with why.
Refused: TypeAlias = tuple[Record, str]


class ConsumerName(StrEnum):
    """Who consumed a record: the `dlq.consumer` header of what it parks."""

    EXECUTOR = "executor"
    PROJECTOR = "projector"
    # A replay rebuilds the projector's read model with the projector's fold, so it parks
    # under the projector's name (an alias: `ConsumerName.REPLAY is ConsumerName.PROJECTOR`).
    REPLAY = "projector"
    NOTIFIER = "notifier"


@dataclass(slots=True)
class ConsumeStats:
    """What one consumer did with the records it read, since it started.

    `records_read` = `events` + `unknown_skipped` + malformed records, plus any records a
    consumer passed over before decoding (the projector's already-applied ones). `parked`
    counts malformed records and events the consumer could decode but not apply (the read
    model refuses the row); the executor does not park again what an earlier run of its
    group parked already.
    """

    records_read: int = 0
    events: int = 0
    unknown_skipped: int = 0
    parked: int = 0

    def add(self, other: ConsumeStats) -> None:
        self.records_read += other.records_read
        self.events += other.events
        self.unknown_skipped += other.unknown_skipped
        self.parked += other.parked

    def count(self, batch: SortedBatch, records_read: int) -> None:
        """Add one sorted batch of `records_read` fetched records (parking counts itself)."""
        self.records_read += records_read
        self.events += batch.events
        self.unknown_skipped += batch.unknown_skipped

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SortedBatch:
    """Fetched records sorted into events (handed out by `read`), unknown types (counted) and
    malformed records (kept, with why, for `DeadLetters.park_all`)."""

    __slots__ = ("events", "malformed", "unknown_skipped")

    def __init__(self) -> None:
        self.events = 0
        self.unknown_skipped = 0
        self.malformed: list[Refused] = []

    def read(self, records: Iterable[Record]) -> Iterator[tuple[Record, Event]]:
        """Decode `records` in order and yield each event with its record.

        It keeps no list of the events: the replay's bulk phase folds millions of records
        straight from this loop, so it costs one decode and one generator step per record.
        The counts are added when the generator ends (or is closed).
        """
        events = unknown = 0
        malformed = self.malformed.append
        try:
            for record in records:
                try:
                    event = decode(record.value)
                except UnknownEventType as exc:
                    unknown += 1
                    log.debug("skipping unknown event type", extra={"type": exc.event_type})
                    continue
                except MalformedEvent as exc:
                    malformed((record, str(exc)))
                    continue
                events += 1
                yield record, event
        finally:
            self.events += events
            self.unknown_skipped += unknown


def sort_batch(records: Iterable[Record]) -> tuple[list[tuple[Record, Event]], SortedBatch]:
    """The events of `records` as a list, and the batch's sorting (unknown, malformed)."""
    batch = SortedBatch()
    return list(batch.read(records)), batch


def unapplicable(why: str) -> str:
    """The dead-letter error of an event that was read but that the read model refuses."""
    return f"cannot be applied: {why}"


class DeadLetters:
    """One consumer's way to the dead-letter topic (`shared.dead_letter.park`), counting in
    its `ConsumeStats`."""

    def __init__(
        self,
        appender: Appender,
        dead_letter_topic: str,
        consumer: ConsumerName,
        stats: ConsumeStats,
    ) -> None:
        self._appender = appender
        self._topic = dead_letter_topic
        self._consumer = consumer
        self.stats = stats

    async def park(self, record: Record, error: str) -> None:
        await park(self._appender, self._topic, record, error, self._consumer.value)
        self.stats.parked += 1

    async def park_all(self, refused: Iterable[Refused]) -> None:
        for record, error in refused:
            await self.park(record, error)
