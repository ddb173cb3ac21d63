"""Grouping dead-letter records into one entry per original record, and choosing entries."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.parked import REDRIVE_OF, REDRIVE_TO, ParkedError, group, select


@dataclass
class Record:
    partition: int
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = b"k"
    value: bytes | None = b"v"


def parked(partition: int, offset: int, origin_offset: int, consumer: str, error: str) -> Record:
    return Record(
        partition,
        offset,
        [
            ("trace", b"t"),
            ("dlq.original.topic", b"events"),
            ("dlq.original.partition", b"1"),
            ("dlq.original.offset", str(origin_offset).encode()),
            ("dlq.error", error.encode()),
            ("dlq.consumer", consumer.encode()),
        ],
    )


def test_copies_by_every_consumer_and_replay_are_one_entry_and_markers_mark_it() -> None:
    records = [
        parked(0, 0, 7, "projector", "not JSON"),
        parked(2, 0, 7, "executor", "not JSON"),
        parked(0, 1, 7, "projector", "not JSON"),  # a replay parked it again
        parked(1, 0, 9, "executor", "bad version"),
        Record(1, 1, [("something", b"else")]),  # not written by the gateway: ignored
        Record(2, 1, [(REDRIVE_OF, b"events:1:9"), (REDRIVE_TO, b"events:0:40")], value=None),
    ]
    first, second = group(records)
    assert (first.origin.offset, first.consumers, first.errors) == (
        7,
        ["executor", "projector"],
        ["not JSON"],
    )
    assert first.id == "0:0" and sorted(first.copies) == [(0, 0), (0, 1), (2, 0)]
    assert first.headers == [("trace", b"t")] and first.redriven_to is None
    assert second.redriven_to == "events:0:40"

    assert select([first, second], ["2:0"], everything=False) == [first]
    assert select([first, second], ["1:0", "0:1"], everything=False) == [second, first]
    assert select([first, second], [], everything=True) == [first, second]
    with pytest.raises(ParkedError, match="ambiguous"):
        select([first, second], ["0"], everything=False)
    with pytest.raises(ParkedError, match="no parked record at 5:5"):
        select([first, second], ["5:5"], everything=False)
