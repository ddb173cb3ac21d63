"""The bucket event contract: CloudEvents 1.0 in structured JSON mode, one schema version each.

Every event about one bucket name is keyed by that name, so it lands in one partition, in order.
Consumers must skip types they do not know (`UnknownEventType`) and park what they cannot read
(`MalformedEvent`). Old schema versions stay readable through `UPCASTERS`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import SchemaValidator, core_schema

from shared.errors import MalformedEvent, UnknownEventType

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
CONTENT_TYPE_HEADER = ("content-type", CONTENT_TYPE.encode())
SCHEMA_VERSION = 1
# What a published `tx_hash` always looks like (`normalise_tx_hash` makes it so).
TX_HASH_PATTERN = r"^0x[0-9a-f]{64}$"

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
RAW_TRANSACTION_PATTERN = r"^0x(?:[0-9a-f]{2})+$"

_TX_HASH = re.compile(r"^(?:0[xX])?([0-9a-fA-F]{64})$")


def normalise_tx_hash(value: str) -> str:
    """`0x` + 64 lowercase hex, whatever case or prefix the backend returned."""
    match = _TX_HASH.match(value.strip())
    if match is None:
        raise ValueError("a transaction hash is 64 hexadecimal characters, optionally 0x-prefixed")
    return "0x" + match.group(1).lower()


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: uuid.UUID
    bucket_name: str = Field(min_length=1, max_length=1024)


class BucketRequested(_Data):
    """A client asked for a bucket; the job is born queued. A retry of a failed job is a new
    job, requested with `retry_of` naming the failed one (docs/decisions.md, retries)."""

    type: Literal["BucketRequested"] = "BucketRequested"
    retry_of: uuid.UUID | None = Field(
        default=None, description="the failed job this job retries; null for a client's request"
    )


class BucketProcessing(_Data):
    """The executor started attempt number `attempt` (1-based) of the job."""

    type: Literal["BucketProcessing"] = "BucketProcessing"
    attempt: int = Field(ge=1)


class BucketCreated(_Data):
    """The bucket exists on the chain and belongs to this job."""

    type: Literal["BucketCreated"] = "BucketCreated"
    tx_hash: str | None = Field(
        default=None,
        description="null only for an adopted bucket whose creating transaction we never saw",
        json_schema_extra={"pattern": TX_HASH_PATTERN},
    )
    bucket_id: str | None = None
    bucket_created_at: int | None = Field(default=None, description="block time, Unix seconds")
    adopted: bool = Field(
        default=False,
        description="true when the bucket already existed on the chain and the job took it over",
    )
    block_number: int | None = Field(
        default=None, ge=0, description="the block that mined `tx_hash`, where the backend knows"
    )

    @field_validator("tx_hash")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        return None if value is None else normalise_tx_hash(value)


class BucketTransactionSigned(_Data):
    """The executor signed a transaction for the job and recorded it here BEFORE broadcasting
    it: after a crash the job is resolved from these records (their receipts and the chain's
    nonce), never by signing a new create while one of them could still be mined. The job is
    processing and shows `tx_hash` as its pending transaction. `raw_transaction` is the signed
    bytes a recovery re-broadcasts: public once sent, it holds no secret."""

    type: Literal["BucketTransactionSigned"] = "BucketTransactionSigned"
    attempt: int = Field(ge=1, description="the job's attempt that signed it")
    kind: Literal["create", "replacement"] = Field(
        description="create: a new nonce; replacement: the same nonce with bumped fees"
    )
    signer: str = Field(pattern=ADDRESS_PATTERN, description="the signing key's address")
    chain_id: int = Field(ge=1)
    nonce: int = Field(ge=0)
    tx_hash: str = Field(json_schema_extra={"pattern": TX_HASH_PATTERN})
    raw_transaction: str = Field(
        pattern=RAW_TRANSACTION_PATTERN, description="the signed transaction, 0x-prefixed hex"
    )
    max_fee_per_gas: int = Field(ge=0, description="wei")
    max_priority_fee_per_gas: int = Field(ge=0, description="wei")
    gas: int = Field(ge=0, description="the gas limit")

    @field_validator("tx_hash")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_tx_hash(value)


class BucketFailed(_Data):
    """The job ended without a bucket; `error_code` is stable, `error` is for humans."""

    type: Literal["BucketFailed"] = "BucketFailed"
    error: str
    error_code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    attempts: int = Field(ge=0)


EventData: TypeAlias = (
    BucketRequested | BucketProcessing | BucketTransactionSigned | BucketCreated | BucketFailed
)
DATA_TYPES: dict[str, type[EventData]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        BucketRequested,
        BucketProcessing,
        BucketTransactionSigned,
        BucketCreated,
        BucketFailed,
    )
}

# (event type, schema version) -> function turning that version's `data` into the next one's.
Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class Event(BaseModel):
    """A CloudEvents 1.0 envelope around one bucket event."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    schema_version: int = SCHEMA_VERSION
    data: EventData

    @property
    def job_id(self) -> uuid.UUID:
        return self.data.job_id


def new_event(data: EventData, source: str, *, time: datetime | None = None) -> Event:
    """A fresh event with a unique id, stamped now (UTC) unless `time` is given."""
    return Event(
        id=str(uuid.uuid4()),
        source=source,
        type=data.type,
        subject=data.bucket_name,
        time=time or datetime.now(UTC),
        data=data,
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_cloudevent(event: Event) -> dict[str, Any]:
    """The structured-mode JSON document, as a dict."""
    return {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": _rfc3339(event.time),
        "datacontenttype": "application/json",
        "schemaversion": event.schema_version,
        "data": event.data.model_dump(mode="json", exclude={"type"}),
    }


def encode(event: Event) -> bytes:
    return orjson.dumps(to_cloudevent(event))


def record_key(event: Event) -> bytes:
    return event.subject.encode()


def _upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise MalformedEvent(f"no upcaster for {event_type} schema version {version}")
        data = step(data)
        version += 1
    return data


# The canonical form, as `encode` writes it: whatever passes these checks, pydantic accepts
# with exactly these values (tests/shared/test_event_fast_path.py proves it differentially). Times
# and job ids go through pydantic's own validators for those types.
_UUID = SchemaValidator(core_schema.uuid_schema())
_DATETIME = SchemaValidator(core_schema.datetime_schema())
_CANONICAL_TX_HASH = re.compile(r"0x[0-9a-f]{64}")
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")
_INT64 = 1 << 63
_new = object.__new__
_set = object.__setattr__


def _validated(cls: type[BaseModel], values: dict[str, Any], fields_set: set[str]) -> Any:
    """The instance pydantic would build from `values`, which are already validated: what
    `model_construct` does for these models (no aliases, extras or private attributes), without
    its generic per-field work, which costs more than validating."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", fields_set)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _int(value: object, low: int) -> bool:
    return type(value) is int and low <= value < _INT64


def _canonical_data(event_type: str, raw: dict[str, Any]) -> EventData | None:
    job_id, name = raw.get("job_id"), raw.get("bucket_name")
    if (
        "type" in raw
        or type(job_id) is not str
        or type(name) is not str
        or not 0 < len(name) <= 1024
    ):
        return None
    try:
        job = _UUID.validate_python(job_id)
    except ValidationError:
        return None
    values: dict[str, Any] = {"job_id": job, "bucket_name": name, "type": event_type}
    given = {"job_id", "bucket_name"}
    if event_type == "BucketRequested":
        retry_of = raw.get("retry_of")
        if retry_of is not None:
            if type(retry_of) is not str:
                return None
            try:
                retry_of = _UUID.validate_python(retry_of)
            except ValidationError:
                return None
        if "retry_of" in raw:
            given.add("retry_of")
        values["retry_of"] = retry_of
        return _validated(BucketRequested, values, given)  # type: ignore[no-any-return]
    if event_type == "BucketProcessing":
        attempt = raw.get("attempt")
        if not _int(attempt, 1):
            return None
        values["attempt"] = attempt
        given.add("attempt")
        return _validated(BucketProcessing, values, given)  # type: ignore[no-any-return]
    if event_type == "BucketTransactionSigned":
        return None  # one or two a job: the pydantic path is fast enough
    if event_type == "BucketCreated":
        tx_hash, bucket_id = raw.get("tx_hash"), raw.get("bucket_id")
        created_at, adopted = raw.get("bucket_created_at"), raw.get("adopted", False)
        block = raw.get("block_number")
        if (
            not (
                tx_hash is None or (type(tx_hash) is str and _CANONICAL_TX_HASH.fullmatch(tx_hash))
            )
            or not (bucket_id is None or type(bucket_id) is str)
            or not (created_at is None or _int(created_at, -_INT64))
            or type(adopted) is not bool
            or not (block is None or _int(block, 0))
        ):
            return None
        values.update(
            tx_hash=tx_hash,
            bucket_id=bucket_id,
            bucket_created_at=created_at,
            adopted=adopted,
            block_number=block,
        )
        given.update(
            k
            for k in ("tx_hash", "bucket_id", "bucket_created_at", "adopted", "block_number")
            if k in raw
        )
        return _validated(BucketCreated, values, given)  # type: ignore[no-any-return]
    error, code, attempts = raw.get("error"), raw.get("error_code"), raw.get("attempts")
    if (
        type(error) is not str
        or type(code) is not str
        or _ERROR_CODE.fullmatch(code) is None
        or not _int(attempts, 0)
    ):
        return None
    values.update(error=error, error_code=code, attempts=attempts)
    given.update(("error", "error_code", "attempts"))
    return _validated(BucketFailed, values, given)  # type: ignore[no-any-return]


_EVENT_FIELDS = frozenset({"id", "source", "type", "subject", "time", "data"})


def _canonical(doc: dict[str, Any], event_type: str, raw: dict[str, Any]) -> Event | None:
    """The event of a current-version document in canonical form, else None (then the pydantic
    path decides): the same event `decode`'s pydantic path builds, in a third of the time."""
    event_id, source, subject, moment = (
        doc.get("id"),
        doc.get("source"),
        doc.get("subject"),
        doc.get("time"),
    )
    if (
        type(event_id) is not str
        or type(source) is not str
        or type(subject) is not str
        or type(moment) is not str
        or moment[-1:] != "Z"  # in UTC: no offset to check, nothing out of range after it
    ):
        return None
    data = _canonical_data(event_type, raw)
    if data is None or data.bucket_name != subject:
        return None
    try:
        time = _DATETIME.validate_python(moment)
    except ValidationError:
        return None
    values = {
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": time,
        "schema_version": SCHEMA_VERSION,
        "data": data,
    }
    return _validated(Event, values, set(_EVENT_FIELDS))  # type: ignore[no-any-return]


def decode(value: bytes | None) -> Event:
    """Parse one record value; raises `MalformedEvent` or `UnknownEventType`."""
    if not value:
        raise MalformedEvent("empty record value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEvent("a CloudEvent must be a JSON object")
    if doc.get("specversion") != SPEC_VERSION:
        raise MalformedEvent(f"unsupported CloudEvents specversion {doc.get('specversion')!r}")
    event_type = doc.get("type")
    if not isinstance(event_type, str):
        raise MalformedEvent("missing event type")
    data_type = DATA_TYPES.get(event_type)
    if data_type is None:
        raise UnknownEventType(event_type)
    version = doc.get("schemaversion", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedEvent(f"bad schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise MalformedEvent(f"schema version {version} is newer than this code ({SCHEMA_VERSION})")
    raw_data = doc.get("data")
    if not isinstance(raw_data, dict):
        raise MalformedEvent("data must be a JSON object")
    if version == SCHEMA_VERSION:
        canonical = _canonical(doc, event_type, raw_data)
        if canonical is not None:
            return canonical
    try:
        data = data_type.model_validate(_upcast(event_type, version, raw_data))
        event = Event(
            id=doc["id"],
            source=doc["source"],
            type=event_type,
            subject=doc["subject"],
            time=doc["time"],
            data=data,
        )
    except (KeyError, ValidationError) as exc:
        raise MalformedEvent(f"invalid {event_type}: {exc}") from exc
    if event.subject != data.bucket_name:
        raise MalformedEvent("subject must equal data.bucket_name")
    if event.time.tzinfo is None:
        raise MalformedEvent("time must carry a UTC offset")
    try:  # e.g. 0001-01-01T00:00:00+01:00: Postgres would store it, but nobody could read it back
        event.time.astimezone(UTC)
    except OverflowError as exc:
        raise MalformedEvent("time is outside the years 1 to 9999 in UTC") from exc
    return event
