"""The event contract: CloudEvents 1.0 structured JSON, normalised hashes, upcasting on read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from shared import events
from shared.events import (
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    BucketTransactionSigned,
    Event,
    EventData,
    MalformedEvent,
    UnknownEventType,
    decode,
    encode,
    new_event,
    normalise_tx_hash,
    record_key,
)

SOURCE = "/tests/events"
JOB = uuid.UUID("8a1f9a52-6c1e-4f1e-9d0c-0a7b3e2f4d11")
NAME = "my-bucket"
HEX = "ab" * 32
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

EXAMPLES: list[EventData] = [
    BucketRequested(job_id=JOB, bucket_name=NAME),
    BucketProcessing(job_id=JOB, bucket_name=NAME, attempt=2),
    BucketCreated(
        job_id=JOB,
        bucket_name=NAME,
        tx_hash="0x" + HEX,
        bucket_id="bucket-id-1",
        bucket_created_at=1_767_000_000,
    ),
    BucketCreated(job_id=JOB, bucket_name=NAME, tx_hash=None, adopted=True),
    BucketFailed(
        job_id=JOB, bucket_name=NAME, error="insufficient funds", error_code="x_y", attempts=3
    ),
    BucketCreated(job_id=JOB, bucket_name=NAME, tx_hash="0x" + HEX, block_number=12),
    BucketTransactionSigned(
        job_id=JOB,
        bucket_name=NAME,
        attempt=1,
        kind="replacement",
        signer="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",  # anvil's first public dev account
        chain_id=31337,
        nonce=4,
        tx_hash="0x" + HEX,
        raw_transaction="0x02f8b1827a69",
        max_fee_per_gas=2_250_000_000,
        max_priority_fee_per_gas=1_125_000_000,
        gas=300_000,
    ),
]


def document(data: EventData) -> dict[str, Any]:
    """The JSON document of a valid event, ready to be tampered with."""
    doc: dict[str, Any] = orjson.loads(encode(new_event(data, SOURCE, time=WHEN)))
    return doc


def raw(doc: Any) -> bytes:
    return orjson.dumps(doc)


@pytest.mark.parametrize("data", EXAMPLES, ids=lambda d: f"{d.type}")
def test_encode_then_decode_gives_back_the_same_event(data: EventData) -> None:
    event = new_event(data, SOURCE, time=WHEN)
    decoded = decode(encode(event))
    assert decoded == event
    assert decoded.data == data
    assert type(decoded.data) is type(data)


@pytest.mark.parametrize("data", EXAMPLES, ids=lambda d: f"{d.type}")
def test_encoded_event_is_a_structured_cloudevent(data: EventData) -> None:
    event = new_event(data, SOURCE, time=WHEN)
    doc = orjson.loads(encode(event))
    assert doc["specversion"] == "1.0"
    assert doc["id"] == event.id and uuid.UUID(doc["id"])
    assert doc["source"] == SOURCE
    assert doc["type"] == data.type
    assert doc["subject"] == NAME
    assert doc["time"] == "2026-01-02T03:04:05.678000Z"
    assert doc["datacontenttype"] == "application/json"
    assert doc["schemaversion"] == events.SCHEMA_VERSION
    assert doc["data"]["job_id"] == str(JOB)
    assert doc["data"]["bucket_name"] == NAME
    assert "type" not in doc["data"]


def test_each_new_event_gets_its_own_id() -> None:
    data = EXAMPLES[0]
    assert new_event(data, SOURCE).id != new_event(data, SOURCE).id


def test_new_event_without_time_is_stamped_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = new_event(EXAMPLES[0], SOURCE)
    after = datetime.now(UTC)
    assert before <= event.time <= after
    assert event.time.utcoffset() == timedelta(0)


def test_time_with_another_offset_is_written_as_utc_and_reads_back_as_the_same_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)
    event = new_event(EXAMPLES[0], SOURCE, time=local)
    doc = orjson.loads(encode(event))
    assert doc["time"] == "2026-01-02T03:04:05Z"
    assert decode(encode(event)).time == local


def test_record_key_is_the_bucket_name_in_utf8() -> None:
    assert record_key(new_event(EXAMPLES[0], SOURCE)) == NAME.encode()


def test_content_type_header_names_structured_cloudevents() -> None:
    assert events.CONTENT_TYPE_HEADER == ("content-type", b"application/cloudevents+json")


# Transaction hashes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "0X" + HEX.upper(),
        "0x" + HEX.upper(),
        "0X" + HEX,
        HEX,
        HEX.upper(),
        "0x" + HEX,
        "  " + HEX + "\n",
        "0x" + "Ab" * 32,
    ],
)
def test_tx_hash_is_normalised_to_0x_and_lowercase(given: str) -> None:
    assert normalise_tx_hash(given) == "0x" + HEX


def test_created_event_normalises_its_tx_hash() -> None:
    data = BucketCreated(job_id=JOB, bucket_name=NAME, tx_hash="0X" + HEX.upper())
    assert data.tx_hash == "0x" + HEX
    doc = document(data)
    assert doc["data"]["tx_hash"] == "0x" + HEX


def test_decoding_normalises_a_bare_uppercase_tx_hash_in_the_log() -> None:
    doc = document(EXAMPLES[2])
    doc["data"]["tx_hash"] = HEX.upper()
    event = decode(raw(doc))
    assert isinstance(event.data, BucketCreated)
    assert event.data.tx_hash == "0x" + HEX


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0x",
        "ab" * 31,
        "ab" * 31 + "a",
        "ab" * 32 + "a",
        "ab" * 33,
        "0x" + "ab" * 31,
        "0x" + "ab" * 33,
        "0x" + "g" * 64,
        "0y" + HEX,
        "x" + HEX,
        "00x" + HEX,
    ],
)
def test_tx_hash_of_wrong_length_or_alphabet_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_tx_hash(bad)


def test_decoding_a_created_event_with_a_bad_tx_hash_is_malformed() -> None:
    doc = document(EXAMPLES[2])
    doc["data"]["tx_hash"] = "0x" + "ab" * 31
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


# Unknown and malformed ------------------------------------------------------------------------


def test_decoding_an_unknown_type_raises_unknown_event_type_naming_it() -> None:
    doc = document(EXAMPLES[0])
    doc["type"] = "BucketRetryScheduled"
    with pytest.raises(UnknownEventType) as caught:
        decode(raw(doc))
    assert caught.value.event_type == "BucketRetryScheduled"
    assert not isinstance(caught.value, MalformedEvent)


def test_unknown_type_from_newer_code_is_unknown_not_malformed() -> None:
    """A type this code does not know is skipped whatever schema version its writer used."""
    doc = document(EXAMPLES[0])
    doc["type"] = "BucketRetryScheduled"
    doc["schemaversion"] = events.SCHEMA_VERSION + 1
    with pytest.raises(UnknownEventType):
        decode(raw(doc))


def test_unknown_type_is_reported_even_when_its_data_is_not_ours() -> None:
    doc = document(EXAMPLES[0])
    doc["type"] = "BucketDeleted"
    doc["data"] = {"whatever": [1, 2, 3]}
    with pytest.raises(UnknownEventType):
        decode(raw(doc))


@pytest.mark.parametrize(
    "value",
    [None, b"", b"{", b"not json", b"\xff\xfe", b'{"specversion": "1.0",}'],
    ids=["none", "empty", "truncated", "text", "binary", "trailing-comma"],
)
def test_value_that_is_not_json_is_malformed(value: bytes | None) -> None:
    with pytest.raises(MalformedEvent):
        decode(value)


@pytest.mark.parametrize("value", [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_malformed(value: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode(value)


def test_json_array_holding_a_valid_event_is_malformed() -> None:
    with pytest.raises(MalformedEvent):
        decode(raw([document(EXAMPLES[0])]))


@pytest.mark.parametrize(
    "field", ["specversion", "id", "source", "type", "subject", "time", "data"]
)
def test_event_missing_an_envelope_field_is_malformed(field: str) -> None:
    doc = document(EXAMPLES[1])
    del doc[field]
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (EXAMPLES[0], "job_id"),
        (EXAMPLES[0], "bucket_name"),
        (EXAMPLES[1], "attempt"),
        (EXAMPLES[4], "error"),
        (EXAMPLES[4], "error_code"),
        (EXAMPLES[4], "attempts"),
        (EXAMPLES[6], "nonce"),
        (EXAMPLES[6], "raw_transaction"),
        (EXAMPLES[6], "signer"),
        (EXAMPLES[6], "kind"),
    ],
)
def test_event_missing_a_required_data_field_is_malformed(data: EventData, field: str) -> None:
    doc = document(data)
    del doc["data"][field]
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_id", "not-a-uuid"),
        ("bucket_name", ""),
        ("attempt", 0),
        ("attempt", "two"),
    ],
)
def test_event_with_an_invalid_data_value_is_malformed(field: str, value: object) -> None:
    doc = document(EXAMPLES[1])
    doc["data"][field] = value
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


def test_failed_event_with_an_unstable_error_code_is_malformed() -> None:
    doc = document(EXAMPLES[4])
    doc["data"]["error_code"] = "Not A Code"
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


@pytest.mark.parametrize("data_value", [None, [], "text", 1])
def test_data_that_is_not_an_object_is_malformed(data_value: object) -> None:
    doc = document(EXAMPLES[0])
    doc["data"] = data_value
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


def test_subject_different_from_bucket_name_is_malformed() -> None:
    doc = document(EXAMPLES[0])
    doc["subject"] = "other-bucket"
    with pytest.raises(MalformedEvent, match="subject"):
        decode(raw(doc))


@pytest.mark.parametrize("version", ["0.3", "2.0", None, 1])
def test_other_cloudevents_specversion_is_malformed(version: object) -> None:
    doc = document(EXAMPLES[0])
    doc["specversion"] = version
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


def test_schema_version_newer_than_the_code_is_malformed() -> None:
    doc = document(EXAMPLES[0])
    doc["schemaversion"] = events.SCHEMA_VERSION + 1
    with pytest.raises(MalformedEvent, match="newer"):
        decode(raw(doc))


@pytest.mark.parametrize("version", [0, -1, "1", 1.5, True, None])
def test_schema_version_that_is_not_a_positive_integer_is_malformed(version: object) -> None:
    doc = document(EXAMPLES[0])
    doc["schemaversion"] = version
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


def test_missing_schema_version_reads_as_version_1() -> None:
    doc = document(EXAMPLES[1])
    del doc["schemaversion"]
    assert decode(raw(doc)).data == EXAMPLES[1]


@pytest.mark.parametrize("when", ["2026-01-02T03:04:05", "2026-01-02T03:04:05.678"])
def test_time_without_offset_is_malformed(when: str) -> None:
    doc = document(EXAMPLES[0])
    doc["time"] = when
    with pytest.raises(MalformedEvent, match="offset"):
        decode(raw(doc))


@pytest.mark.parametrize("when", ["yesterday", "", "2026-13-40T00:00:00Z", None])
def test_time_that_is_not_a_timestamp_is_malformed(when: object) -> None:
    doc = document(EXAMPLES[0])
    doc["time"] = when
    with pytest.raises(MalformedEvent):
        decode(raw(doc))


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_time_outside_the_years_1_to_9999_in_utc_is_malformed(when: str) -> None:
    # Postgres would store it, but psycopg could not read the row back.
    doc = document(EXAMPLES[0])
    doc["time"] = when
    with pytest.raises(MalformedEvent, match="years 1 to 9999"):
        decode(raw(doc))


# Tolerance and upcasting ----------------------------------------------------------------------


def test_unknown_extra_data_fields_are_ignored() -> None:
    doc = document(EXAMPLES[2])
    doc["data"]["gas_used"] = 21000
    doc["data"]["note"] = {"nested": ["anything"]}
    assert decode(raw(doc)).data == EXAMPLES[2]


def test_unknown_extra_envelope_attributes_are_ignored() -> None:
    doc = document(EXAMPLES[0])
    doc["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert decode(raw(doc)).data == EXAMPLES[0]


@pytest.fixture
def schema_v2(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, int], Callable[..., Any]]:
    """Pretend the code is at schema version 2; monkeypatch restores version and upcasters."""
    upcasters: dict[tuple[str, int], Callable[..., Any]] = dict(events.UPCASTERS)
    monkeypatch.setattr(events, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(events, "UPCASTERS", upcasters)
    return upcasters


def v1_processing_document() -> dict[str, Any]:
    """A BucketProcessing as a fictional version 1 wrote it: `try` instead of `attempt`."""
    doc = document(EXAMPLES[1])
    doc["schemaversion"] = 1
    doc["data"]["try"] = doc["data"].pop("attempt")
    return doc


def test_old_schema_version_is_upcast_into_the_current_model(
    schema_v2: dict[tuple[str, int], Callable[..., Any]],
) -> None:
    seen: list[dict[str, Any]] = []

    def rename_try_to_attempt(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(data))
        renamed = dict(data)
        renamed["attempt"] = renamed.pop("try")
        return renamed

    schema_v2[("BucketProcessing", 1)] = rename_try_to_attempt
    event = decode(raw(v1_processing_document()))
    assert event.data == EXAMPLES[1]
    assert len(seen) == 1 and seen[0]["try"] == 2


def test_current_schema_version_is_not_upcast(
    schema_v2: dict[tuple[str, int], Callable[..., Any]],
) -> None:
    def must_not_run(data: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a current-version event went through the upcaster")

    schema_v2[("BucketProcessing", 1)] = must_not_run
    doc = document(EXAMPLES[1])
    doc["schemaversion"] = 2
    assert decode(raw(doc)).data == EXAMPLES[1]


def test_old_schema_version_without_an_upcaster_is_malformed(
    schema_v2: dict[tuple[str, int], Callable[..., Any]],
) -> None:
    with pytest.raises(MalformedEvent, match="no upcaster"):
        decode(raw(v1_processing_document()))


def test_upcaster_registered_for_another_type_does_not_apply(
    schema_v2: dict[tuple[str, int], Callable[..., Any]],
) -> None:
    schema_v2[("BucketRequested", 1)] = lambda data: data
    with pytest.raises(MalformedEvent, match="no upcaster"):
        decode(raw(v1_processing_document()))


def test_event_model_is_immutable() -> None:
    event: Event = new_event(EXAMPLES[0], SOURCE)
    with pytest.raises(ValueError):
        event.subject = "other"  # type: ignore[misc]
