"""`decode`'s canonical fast path against its pydantic path, differentially.

The fast path (`shared.events._canonical`) builds events without running the models'
validators; it must accept nothing the pydantic path refuses and, whatever it accepts, give
the very same event (values, types, tzinfo, fields set). These tests decode valid documents,
documents in every shape `encode` never writes, and randomly mutated ones both ways and compare.
"""

from __future__ import annotations

import hashlib
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.replay import generate
from shared import events
from shared.errors import MalformedEvent, UnknownEventType
from shared.events import Event, decode

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)  # what orjson can write
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@contextmanager
def pydantic_path_only() -> Iterator[None]:
    fast = events._canonical
    events._canonical = lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        events._canonical = fast


def outcome(value: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode(value)
    except MalformedEvent as exc:
        return "malformed", str(exc)
    except UnknownEventType as exc:
        return "unknown", exc.event_type


def assert_same(value: bytes) -> tuple[str, Any]:
    """Decode `value` both ways; they must agree exactly. Returns the outcome."""
    with pydantic_path_only():
        expected = outcome(value)
    got = outcome(value)
    assert got[0] == expected[0], (value, got, expected)
    if got[0] != "ok":
        assert got == expected
        return got
    a: Event = got[1]
    b: Event = expected[1]
    assert a == b
    assert repr(a) == repr(b)
    assert a.model_dump_json() == b.model_dump_json()
    assert list(a.__dict__) == list(b.__dict__)
    assert list(a.data.__dict__) == list(b.data.__dict__)
    assert type(a.data) is type(b.data)
    assert a.model_fields_set == b.model_fields_set
    assert a.data.model_fields_set == b.data.model_fields_set
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.data.__pydantic_extra__ == b.data.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__
    assert type(a.time.tzinfo) is type(b.time.tzinfo)
    assert a.time.utcoffset() == b.time.utcoffset()
    assert type(a.data.job_id) is uuid.UUID
    for name, field_value in a.data.__dict__.items():
        assert type(field_value) is type(b.data.__dict__[name]), name
    return got


def fast_path_taken(value: bytes) -> bool:
    doc = orjson.loads(value)
    return events._canonical(doc, doc["type"], doc["data"]) is not None


# What the gateway writes ----------------------------------------------------------------------

GENERATED = [value for _, value in generate(60)]


@pytest.mark.parametrize("value", GENERATED[:12])
def test_events_as_encoded_take_the_fast_path_and_decode_identically(value: bytes) -> None:
    assert fast_path_taken(value)
    assert assert_same(value)[0] == "ok"


def test_every_type_and_optional_field_shape_decodes_identically() -> None:
    job = str(uuid.uuid4())
    base = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/t",
        "subject": "b",
        "time": "2026-01-02T03:04:05.678Z",
        "datacontenttype": "application/json",
        "schemaversion": 1,
    }
    datas: list[tuple[str, dict[str, Any]]] = [
        ("BucketRequested", {}),
        ("BucketRequested", {"retry_of": None}),
        ("BucketRequested", {"retry_of": str(uuid.uuid4())}),
        ("BucketProcessing", {"attempt": 1}),
        ("BucketCreated", {}),
        ("BucketCreated", {"tx_hash": None, "adopted": True}),
        ("BucketCreated", {"tx_hash": "0x" + "a" * 64, "bucket_id": "x", "bucket_created_at": 5}),
        ("BucketCreated", {"bucket_id": None, "bucket_created_at": None, "adopted": False}),
        ("BucketCreated", {"tx_hash": "0x" + "b" * 64, "block_number": 0}),
        ("BucketCreated", {"block_number": None}),
        ("BucketFailed", {"error": "", "error_code": "a", "attempts": 0}),
        ("BucketFailed", {"error": "e", "error_code": "a_1", "attempts": 7, "extra": [1]}),
    ]
    for event_type, data in datas:
        doc = {**base, "type": event_type, "data": {"job_id": job, "bucket_name": "b", **data}}
        value = orjson.dumps(doc)
        assert fast_path_taken(value), doc
        assert assert_same(value)[0] == "ok"


def test_transaction_records_take_the_pydantic_path_and_block_numbers_are_checked() -> None:
    job = str(uuid.uuid4())
    envelope = {"specversion": "1.0", "id": "e", "source": "/t", "subject": "b"}
    envelope["time"] = "2026-01-02T03:04:05Z"
    signed = {
        "job_id": job,
        "bucket_name": "b",
        "attempt": 1,
        "kind": "create",
        "signer": "0x" + "A1" * 20,
        "chain_id": 31337,
        "nonce": 0,
        "tx_hash": "0x" + "c" * 64,
        "raw_transaction": "0x02f8",
        "max_fee_per_gas": 1,
        "max_priority_fee_per_gas": 1,
        "gas": 21000,
    }
    value = orjson.dumps({**envelope, "type": "BucketTransactionSigned", "data": signed})
    assert not fast_path_taken(value)
    assert assert_same(value)[0] == "ok"
    for bad in (-1, True, 1.5, "7"):
        data = {"job_id": job, "bucket_name": "b", "tx_hash": None, "block_number": bad}
        value = orjson.dumps({**envelope, "type": "BucketCreated", "data": data})
        assert not fast_path_taken(value), bad
        assert_same(value)


# Shapes `encode` never writes: they decode the same, most of them by pydantic ---------------

DOC = orjson.loads(GENERATED[2 * 20 + 2])  # a BucketCreated with every field
assert DOC["type"] == "BucketCreated"


def _with(path: tuple[str, ...], value: Any) -> bytes:
    doc = orjson.loads(orjson.dumps(DOC))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return orjson.dumps(doc)


NOT_CANONICAL: list[tuple[tuple[str, ...], Any, bool]] = [
    (("time",), "2026-01-01T00:00:00+00:00", True),
    (("time",), "2026-01-01T01:00:00+01:00", True),
    (("time",), "0001-01-01T00:00:00+01:00", True),
    (("time",), "2026-01-01T00:00:00", True),
    (("time",), "2026-01-01T00:00:00z", True),
    (("time",), "2026-01-01 00:00:00Z", False),
    (("time",), "2026-02-30T00:00:00Z", False),
    (("time",), "2026-01-01T24:00:00Z", False),
    (("time",), "2026-01-01T00:00:60Z", False),
    (("time",), "2026-01-01T00:00:00.1234567Z", False),
    (("time",), "٢٠٢٦-01-01T00:00:00Z", False),
    (("time",), "Z", False),
    (("time",), 1_767_225_600, True),
    (("data", "job_id"), "8A1F9A52-6C1E-4F1E-9D0C-0A7B3E2F4D11", False),
    (("data", "job_id"), "8a1f9a526c1e4f1e9d0c0a7b3e2f4d11", False),
    (("data", "job_id"), "urn:uuid:8a1f9a52-6c1e-4f1e-9d0c-0a7b3e2f4d11", False),
    (("data", "job_id"), "{8a1f9a52-6c1e-4f1e-9d0c-0a7b3e2f4d11}", False),
    (("data", "job_id"), "8a1f9a52-6c1e-4f1e-9d0c-0a7b3e2f4d1", True),
    (("data", "job_id"), 1, True),
    (("data", "tx_hash"), "0X" + "a" * 64, True),
    (("data", "tx_hash"), "A" * 64, True),
    (("data", "tx_hash"), " 0x" + "a" * 64 + "\n", True),
    (("data", "tx_hash"), "0x" + "a" * 63, True),
    (("data", "tx_hash"), "0x" + "g" * 64, True),
    (("data", "bucket_created_at"), 1.0, True),
    (("data", "bucket_created_at"), "5", True),
    (("data", "bucket_created_at"), True, True),
    (("data", "bucket_created_at"), 1 << 63, True),
    (("data", "bucket_created_at"), (1 << 64) - 1, True),
    (("data", "adopted"), 1, True),
    (("data", "adopted"), "true", True),
    (("data", "adopted"), None, True),
    (("data", "bucket_id"), 5, True),
    (("data", "type"), "BucketCreated", True),
    (("data", "type"), "BucketFailed", True),
    (("data", "bucket_name"), "", True),
    (("data", "bucket_name"), "x" * 1025, True),
    (("data", "bucket_name"), "é" * 1025, True),
    (("data", "bucket_name"), 5, True),
    (("subject",), "someone-else", True),
    (("subject",), 5, True),
    (("id",), 5, True),
    (("source",), None, True),
    (("schemaversion",), 0, False),
    (("schemaversion",), 2, False),
    (("schemaversion",), True, False),
]


@pytest.mark.parametrize(("path", "value", "pydantic_only"), NOT_CANONICAL, ids=repr)
def test_documents_encode_never_writes_decode_the_same(
    path: tuple[str, ...], value: Any, pydantic_only: bool
) -> None:
    """Those marked `pydantic_only` must be left to the pydantic path; the others (other
    spellings of a time or job id, which go through pydantic's own validators for those types,
    or schema versions, checked before either path) may take the fast path."""
    document = _with(path, value)
    if pydantic_only:
        assert not fast_path_taken(document)
    assert_same(document)


def test_long_names_within_the_limit_in_characters_not_bytes_take_the_fast_path() -> None:
    name = "é" * 1024
    doc = orjson.loads(orjson.dumps(DOC))
    doc["subject"] = doc["data"]["bucket_name"] = name
    assert fast_path_taken(orjson.dumps(doc))
    assert assert_same(orjson.dumps(doc))[0] == "ok"


# Property: random documents and random mutations of valid ones ------------------------------

TYPES = st.sampled_from(["BucketRequested", "BucketProcessing", "BucketCreated", "BucketFailed"])
OFFSETS = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


def mostly(draw: st.DrawFn, valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """A value from `valid` nine times in ten, so that whole documents are often valid."""
    return draw(valid if draw(st.integers(0, 9)) else other)


@st.composite
def times(draw: st.DrawFn) -> Any:
    moment = draw(st.datetimes(timezones=st.none() | st.just(UTC) | OFFSETS))
    form = draw(st.sampled_from(["Z", "Z", "Z", "iso", "space", "trim", "raw"]))
    if form == "Z" and moment.tzinfo is not None:
        try:
            return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
        except OverflowError:
            return moment.isoformat()
    if form == "space":
        return moment.isoformat(sep=" ")
    if form == "trim":
        return moment.isoformat(timespec="milliseconds") + "Z"
    if form == "raw":
        return draw(st.text(alphabet="0123456789-T:.Z+z ", max_size=30))
    return moment.isoformat()


HEX64 = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)


@st.composite
def data_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "job_id": mostly(draw, st.uuids().map(str), st.uuids().map(lambda u: u.hex) | JSON),
        "bucket_name": mostly(
            draw, st.text(min_size=1, max_size=3) | st.just("b" * 1024), st.just("") | JSON
        ),
    }
    candidates = {
        "attempt": st.integers(min_value=-2, max_value=3),
        "attempts": st.integers(min_value=-2, max_value=3),
        "tx_hash": st.none() | HEX64.map(lambda h: "0x" + h.lower()),
        "bucket_id": st.none() | st.text(max_size=5),
        "bucket_created_at": st.none() | st.integers(-(1 << 63), (1 << 64) - 1),
        "adopted": st.booleans(),
        "error": st.text(max_size=5),
        "error_code": st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
        "retry_of": st.none() | st.uuids().map(str),
    }
    others = {
        "retry_of": st.uuids().map(lambda u: u.hex.upper()) | st.just("not-a-uuid"),
        "tx_hash": HEX64.flatmap(
            lambda h: st.sampled_from(["0x", "0X", "", " 0x"]).map(lambda p: p + h)
        ),
        "error_code": st.text(alphabet=string.ascii_letters + "_\n0", max_size=5),
    }
    for key, strategy in candidates.items():
        if draw(st.integers(0, 9)) < 8:
            fields[key] = mostly(draw, strategy, others.get(key, JSON) | JSON)
    if draw(st.integers(0, 19)) == 0:
        fields["type"] = draw(TYPES | JSON)
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.text(max_size=4))] = draw(JSON)
    if draw(st.integers(0, 19)) == 0:
        del fields[draw(st.sampled_from(["job_id", "bucket_name"]))]
    return fields


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    data = draw(data_fields())
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": mostly(draw, st.text(max_size=5), JSON),
        "source": mostly(draw, st.just("/s"), JSON),
        "type": draw(TYPES),
        "subject": mostly(draw, st.just(data.get("bucket_name")), JSON),
        "time": mostly(draw, times(), JSON),
        "datacontenttype": "application/json",
        "data": data,
    }
    if draw(st.booleans()):
        doc["schemaversion"] = mostly(draw, st.just(1), JSON)
    return orjson.dumps(doc)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
@example(GENERATED[0])
def test_random_documents_decode_the_same_both_ways(value: bytes) -> None:
    assert_same(value)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    doc = orjson.loads(draw(st.sampled_from(GENERATED)))
    for _ in range(draw(st.integers(1, 3))):
        data = doc.get("data")
        where = data if isinstance(data, dict) and draw(st.booleans()) else doc
        key = draw(st.sampled_from([*sorted(where), "job_id", "type"]) | st.text(max_size=6))
        if draw(st.integers(0, 3)) == 0:
            where.pop(key, None)
        else:
            where[key] = draw(JSON | times())
    return orjson.dumps(doc)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_events_decode_the_same_both_ways(value: bytes) -> None:
    assert_same(value)


def test_the_fast_path_covers_the_generated_log() -> None:
    """The bench's log (what a busy gateway writes) never needs the pydantic path."""
    assert all(fast_path_taken(value) for value in GENERATED)
    assert datetime.fromisoformat(orjson.loads(GENERATED[0])["time"]).tzinfo is not None


def _rules(schema: Any) -> Any:
    """A JSON schema without its prose (titles, descriptions, examples)."""
    if isinstance(schema, dict):
        return {
            k: _rules(v) for k, v in schema.items() if k not in ("title", "description", "examples")
        }
    if isinstance(schema, list):
        return [_rules(v) for v in schema]
    return schema


def models_fingerprint() -> str:
    """The event models' validation rules (JSON schemas without prose, validators, configs),
    hashed."""
    models = (events.Event, *events.DATA_TYPES.values())
    doc = {
        model.__name__: {
            "schema": _rules(model.model_json_schema()),
            "config": {k: str(v) for k, v in model.model_config.items()},
            "validators": {
                name: [sorted(d.info.fields), d.info.mode]
                for name, d in model.__pydantic_decorators__.field_validators.items()
            },
            "model_validators": sorted(model.__pydantic_decorators__.model_validators),
        }
        for model in models
    }
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def test_the_fast_path_was_written_for_these_exact_models() -> None:
    """A changed field, constraint, validator or config of an event model must be mirrored in
    `shared.events._canonical_data` (or excluded from the fast path) before this digest is
    updated: the fast path would otherwise accept what the models refuse."""
    assert models_fingerprint() == FINGERPRINT


# Last reviewed change: `BucketCreated.block_number` (optional, >= 0: mirrored in the fast path)
# the new `BucketTransactionSigned` (left to the pydantic path: one or two per job), and
# `BucketRequested.retry_of` (optional UUID, mirrored in the fast path).
FINGERPRINT = "c9fb902088f05607b80a5c9b2a88c89d32b30b09d0fc1d24b9753448d32ba901"
