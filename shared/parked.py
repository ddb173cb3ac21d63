"""Parked records: list what the consumers parked on the dead-letter topic, and redrive them.

The logic behind `akave-gateway parked` (`cli/parked.py`) and the operator console's parked
records page: one implementation of each step.

A record is parked (`shared/dead_letter.py`) once per consumer that could not read it, and
again on a replay, so the dead-letter topic holds several copies of one original record. Here
the copies are grouped by their origin (`dlq.original.topic/partition/offset`): one entry per
original record, with every consumer that parked it.

Redrive re-appends an entry's original key, value and headers (less `dlq.*`, plus
`redriven.from`) to its original topic, then appends a marker to the dead-letter topic
(no value; headers `dlq.redrive.of` = the origin, `dlq.redrive.to` = where the copy went).
Markers are read back with the parked records, so an entry is never redriven twice. The marker
follows the copy: a crash between the two leaves the entry unmarked, and a second redrive
appends one more copy, which the consumers take as the duplicate it is (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from shared.dead_letter import CONSUMER, ERROR, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC
from shared.errors import GatewayError
from shared.kafka import Appender, make_consumer
from shared.settings import Settings

REDRIVE_OF = "dlq.redrive.of"
REDRIVE_TO = "dlq.redrive.to"
REDRIVEN_FROM = "redriven.from"
DLQ_PREFIX = "dlq."
PREVIEW_CHARS = 120
READ_TIMEOUT_S = 60.0


class ParkedError(GatewayError):
    """The dead-letter topic could not be read or written, or a selection names nothing."""


@dataclass(frozen=True, order=True)
class Origin:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class Parked:
    """One original record, with every copy of it on the dead-letter topic."""

    origin: Origin
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    copies: list[tuple[int, int]] = field(default_factory=list)  # (DLQ partition, offset)
    consumers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    redriven_to: str | None = None

    @property
    def id(self) -> str:
        partition, offset = min(self.copies)
        return f"{partition}:{offset}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dlq": [f"{p}:{o}" for p, o in sorted(self.copies)],
            "origin": {
                "topic": self.origin.topic,
                "partition": self.origin.partition,
                "offset": self.origin.offset,
            },
            "consumers": self.consumers,
            "errors": self.errors,
            "key": key_text(self.key),
            "value_preview": preview(self.value),
            "redriven_to": self.redriven_to,
        }


def key_text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def preview(value: bytes | None) -> str:
    if value is None:
        return "(null)"
    text = value.decode("utf-8", errors="replace")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def group(records: Iterable[Any]) -> list[Parked]:
    """Dead-letter records (in any order) -> one entry per original record, by origin."""
    entries: dict[Origin, Parked] = {}
    redrives: dict[str, str] = {}
    for record in records:
        headers = {k: v.decode("utf-8", errors="replace") for k, v in record.headers or ()}
        if REDRIVE_OF in headers:
            redrives.setdefault(headers[REDRIVE_OF], headers.get(REDRIVE_TO, "?"))
            continue
        try:
            origin = Origin(
                headers[ORIGIN_TOPIC], int(headers[ORIGIN_PARTITION]), int(headers[ORIGIN_OFFSET])
            )
        except (KeyError, ValueError):
            continue  # not written by the gateway's parking; nothing to redrive it to
        entry = entries.get(origin)
        if entry is None:
            original = [(k, v) for k, v in record.headers or () if not k.startswith(DLQ_PREFIX)]
            entry = entries[origin] = Parked(origin, record.key, record.value, original)
        entry.copies.append((record.partition, record.offset))
        consumer = headers.get(CONSUMER, "?")
        if consumer not in entry.consumers:
            entry.consumers.append(consumer)
            entry.consumers.sort()
        error = headers.get(ERROR, "")
        if error not in entry.errors:
            entry.errors.append(error)
    for entry in entries.values():
        entry.redriven_to = redrives.get(str(entry.origin))
    return sorted(entries.values(), key=lambda e: e.origin)


async def read_parked(settings: Settings) -> list[Parked]:
    """Every entry of the dead-letter topic, read from offset 0 to its current end."""
    try:
        return group(await asyncio.wait_for(_read_all(settings), READ_TIMEOUT_S))
    except (TimeoutError, KafkaError, OSError) as exc:
        raise ParkedError(f"cannot read {settings.dead_letter_topic}: {exc!r}") from exc


async def _read_all(settings: Settings) -> list[Any]:
    topic = settings.dead_letter_topic
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return []
        appender = Appender(settings)  # its metadata lookup waits for the topic's partitions
        try:
            partitions = await appender.partitions_for(topic)
        finally:
            await appender.stop()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        records: list[Any] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, part in batch.items():
                records.extend(r for r in part if r.offset < ends[tp])
        return records
    finally:
        await consumer.stop()


def select(entries: Sequence[Parked], ids: Sequence[str], everything: bool) -> list[Parked]:
    """The entries named by DLQ position (`partition:offset`, any copy's), or all of them."""
    if everything:
        return list(entries)
    by_copy = {f"{p}:{o}": e for e in entries for p, o in e.copies}
    chosen: list[Parked] = []
    for wanted in ids:
        entry = by_copy.get(wanted)
        if entry is None:
            matches = {e.origin: e for key, e in by_copy.items() if key.split(":")[1] == wanted}
            if len(matches) > 1:
                raise ParkedError(f"{wanted} is ambiguous: name it as partition:offset")
            entry = next(iter(matches.values()), None)
        if entry is None:
            raise ParkedError(f"no parked record at {wanted} on the dead-letter topic")
        if entry not in chosen:
            chosen.append(entry)
    return chosen


@dataclass(frozen=True)
class Outcome:
    entry: Parked
    action: str  # "redriven", "would redrive" or "already redriven"
    to: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.entry.id,
            "origin": str(self.entry.origin),
            "action": self.action,
            "to": self.to,
        }


async def redrive(settings: Settings, chosen: Sequence[Parked], dry_run: bool) -> list[Outcome]:
    """Re-append each chosen entry to its original topic once, marking it on the DLQ."""
    outcomes: list[Outcome] = []
    appender = Appender(settings)
    try:
        for entry in chosen:
            if entry.redriven_to is not None:
                outcomes.append(Outcome(entry, "already redriven", entry.redriven_to))
                continue
            if dry_run:
                outcomes.append(Outcome(entry, "would redrive", entry.origin.topic))
                continue
            origin = str(entry.origin).encode()
            headers = [(k, v) for k, v in entry.headers if k != REDRIVEN_FROM]
            partition, offset = await asyncio.wait_for(
                appender.send(
                    entry.origin.topic, entry.value, entry.key, [*headers, (REDRIVEN_FROM, origin)]
                ),
                READ_TIMEOUT_S,
            )
            to = f"{entry.origin.topic}:{partition}:{offset}"
            marker = [(REDRIVE_OF, origin), (REDRIVE_TO, to.encode())]
            await asyncio.wait_for(
                appender.send(settings.dead_letter_topic, None, entry.key, marker), READ_TIMEOUT_S
            )
            entry.redriven_to = to
            outcomes.append(Outcome(entry, "redriven", to))
    except (TimeoutError, KafkaError, OSError) as exc:
        raise ParkedError(f"redrive stopped: {exc!r}") from exc
    finally:
        await appender.stop()
    return outcomes
