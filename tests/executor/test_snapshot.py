"""A partition snapshot's payload: what goes in comes out, and a bad one is refused."""

from __future__ import annotations

import json
import uuid

import pytest

from services.executor.attempt_records import signed_event
from services.executor.chain.records import Attempt
from services.executor.ledger import PartitionLedger
from services.executor.snapshot import VERSION, SnapshotRefused, checksum_of, decode, encode
from tests.executor.test_ledger import at, created, processing, requested

ATTEMPT = Attempt(
    signer="0x" + "ab" * 20,
    chain_id=31337,
    nonce=7,
    tx_hash="0x" + "cd" * 32,
    raw="0x02f8",
    max_fee_per_gas=3_000_000_000,
    max_priority_fee_per_gas=1_000_000_000,
    gas=120_000,
    bucket_name="signed-one",
)


def a_ledger() -> PartitionLedger:
    ledger = PartitionLedger()
    queued, signing, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ledger.observe(requested(queued, "queued-one"), offset=3)
    ledger.observe(requested(signing, "signed-one"), offset=4)
    ledger.observe(processing(signing, "signed-one", 2), offset=5)
    ledger.observe(at(signed_event(signing, 2, ATTEMPT, replacement=False)), offset=6)
    ledger.observe(requested(done, "done-one"), offset=7)
    ledger.observe(created(done, "done-one"), offset=8)
    ledger.traceparents[signing] = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    return ledger


def test_a_snapshot_gives_back_the_unfinished_jobs_their_offsets_attempts_and_traces() -> None:
    ledger = a_ledger()
    encoded = encode(ledger, position=9)
    assert (encoded.version, encoded.jobs) == (VERSION, 2)
    back = decode(encoded.payload, encoded.version, encoded.checksum, 9)
    assert back.unfinished == ledger.unfinished
    assert back.request_offsets == ledger.request_offsets
    assert back.signed == ledger.signed
    assert back.traceparents == ledger.traceparents
    assert back.recent.jobs == {}  # the finished jobs are the index's, not the payload's


def test_a_payload_that_does_not_match_its_checksum_is_refused() -> None:
    encoded = encode(a_ledger(), position=9)
    flipped = bytearray(encoded.payload)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(SnapshotRefused, match="checksum"):
        decode(bytes(flipped), encoded.version, encoded.checksum, 9)


def test_a_snapshot_of_a_newer_format_is_refused_with_its_version() -> None:
    encoded = encode(a_ledger(), position=9)
    with pytest.raises(
        SnapshotRefused, match=f"version {VERSION + 1} is newer than .*\\({VERSION}\\)"
    ):
        decode(encoded.payload, VERSION + 1, encoded.checksum, 9)


def test_a_snapshot_of_an_older_format_is_refused() -> None:
    encoded = encode(a_ledger(), position=9)
    with pytest.raises(SnapshotRefused, match="older than"):
        decode(encoded.payload, VERSION - 1, encoded.checksum, 9)


def test_a_payload_whose_row_says_another_position_is_refused() -> None:
    encoded = encode(a_ledger(), position=9)
    with pytest.raises(SnapshotRefused, match=r"position 9, its row says .* at 12"):
        decode(encoded.payload, encoded.version, encoded.checksum, 12)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        json.dumps({"version": VERSION, "position": 9}).encode(),  # no jobs
        json.dumps(
            {"version": VERSION, "position": 9, "jobs": [{"state": {"job_id": "nope"}}]}
        ).encode(),
    ],
)
def test_a_payload_that_cannot_be_read_is_refused_even_with_a_matching_checksum(
    payload: bytes,
) -> None:
    with pytest.raises(SnapshotRefused, match="cannot be read"):
        decode(payload, VERSION, checksum_of(payload), 9)


def test_an_attempt_with_unknown_fields_is_refused() -> None:
    body = json.loads(encode(a_ledger(), position=9).payload)
    signed = next(j for j in body["jobs"] if j["signed"])
    signed["signed"][0]["colour"] = "blue"
    payload = json.dumps(body).encode()
    with pytest.raises(SnapshotRefused, match="cannot be read"):
        decode(payload, VERSION, checksum_of(payload), 9)


def test_the_state_survives_every_optional_field_set() -> None:
    ledger = a_ledger()
    job_id, state = next(iter(ledger.unfinished.items()))
    ledger.unfinished[job_id] = state._replace(
        tx_hash="0x" + "ee" * 32, error="boom", error_code="x", retry_of=uuid.uuid4()
    )
    encoded = encode(ledger, position=9)
    assert decode(encoded.payload, VERSION, encoded.checksum, 9).unfinished == ledger.unfinished
