"""The published contract (contracts/) cannot drift from the code that writes the events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic_asyncapi.v3 import AsyncAPI

from shared import dead_letter
from shared.event_schemas import ENVELOPE, SCHEMA_DIR, differences, generate
from shared.events import (
    CONTENT_TYPE,
    DATA_TYPES,
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketRequested,
    BucketTransactionSigned,
    EventData,
    encode,
    new_event,
    record_key,
)
from shared.parked import REDRIVE_OF, REDRIVE_TO, REDRIVEN_FROM
from shared.settings import Settings

CONTRACTS = SCHEMA_DIR.parent
DEFAULTS = {name: f.default for name, f in Settings.model_fields.items()}
JOB = uuid.UUID("0b0f6f9e-4a8e-4a4f-9b43-6a1f8e2f4c11")
HASH = "0x" + "ab" * 32


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text())
    return loaded


def validator(event_type: str) -> Draft202012Validator:
    schema = orjson.loads((SCHEMA_DIR / f"{event_type}.json").read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return resolve(document, node["$ref"])
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_committed_schemas_are_exactly_what_the_models_generate() -> None:
    assert differences() == [], "run `python -m shared.event_schemas` and commit contracts/"
    assert set(generate()) == {f"{t}.json" for t in DATA_TYPES} | {f"{ENVELOPE}.json"}


def test_drift_is_detected(tmp_path: Path) -> None:
    for name, schema in generate().items():
        (tmp_path / name).write_bytes(orjson.dumps(schema))  # same content, other formatting
    (tmp_path / "BucketRenamed.json").write_text("{}")
    (tmp_path / "BucketFailed.json").unlink()
    problems = differences(tmp_path)
    assert "BucketRenamed.json: not generated from the code" in problems
    assert "BucketFailed.json: missing" in problems
    assert "BucketCreated.json: differs from the models" in problems


def test_every_event_type_is_a_message_of_the_topic_with_its_schema(
    document: dict[str, Any],
) -> None:
    channel = document["channels"]["bucketEvents"]
    assert set(channel["messages"]) == set(DATA_TYPES)
    for event_type in DATA_TYPES:
        message = resolve(document, channel["messages"][event_type]["$ref"])
        assert message["name"] == event_type
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-2020-12"
        assert payload["schema"]["$ref"] == f"./schemas/{event_type}.json"
        traits = [resolve(document, t["$ref"]) for t in message["traits"]]
        headers = traits[0]["headers"]["properties"]
        assert headers["content-type"]["const"] == CONTENT_TYPE
        assert set(headers) == {"content-type", REDRIVEN_FROM}
        assert "bucket name" in traits[0]["bindings"]["kafka"]["key"]["description"]
    consumed = {
        resolve(document, m["$ref"])["name"]
        for m in document["operations"]["projectJobs"]["messages"]
    }
    assert consumed == set(DATA_TYPES)


def test_kafka_bindings_and_dead_letter_headers_match_the_code(document: dict[str, Any]) -> None:
    events = document["channels"]["bucketEvents"]
    parked = document["channels"]["deadLetters"]
    assert events["address"] == events["bindings"]["kafka"]["topic"]
    assert events["address"] == DEFAULTS["bucket_events_topic"]
    assert parked["address"] == parked["bindings"]["kafka"]["topic"]
    assert parked["address"] == DEFAULTS["dead_letter_topic"]
    for channel in (events, parked):
        binding = channel["bindings"]["kafka"]
        assert binding["partitions"] == DEFAULTS["topic_partitions"]
        assert binding["replicas"] == DEFAULTS["topic_replication_factor"]
        assert binding["topicConfiguration"]["retention.ms"] == -1
    executor_group = document["operations"]["runJobs"]["bindings"]["kafka"]["groupId"]
    assert executor_group["enum"] == [DEFAULTS["executor_group_id"]]
    subscriber_group = document["operations"]["subscribe"]["bindings"]["kafka"]["groupId"]
    assert subscriber_group["not"]["enum"] == [DEFAULTS["executor_group_id"]]
    assert "bindings" not in document["operations"]["projectJobs"]  # it has no consumer group

    headers = document["components"]["messages"]["ParkedRecord"]["headers"]
    assert set(headers["required"]) == {
        dead_letter.ORIGIN_TOPIC,
        dead_letter.ORIGIN_PARTITION,
        dead_letter.ORIGIN_OFFSET,
        dead_letter.ERROR,
        dead_letter.CONSUMER,
    }
    assert set(headers["properties"]) == set(headers["required"])
    marker = document["components"]["messages"]["RedriveMarker"]["headers"]
    assert set(marker["required"]) == {REDRIVE_OF, REDRIVE_TO}

    event = new_event(BucketRequested(job_id=JOB, bucket_name="keyed-by-name"), "/test")
    assert record_key(event) == b"keyed-by-name" == event.subject.encode()


def test_asyncapi_document_is_structurally_valid(document: dict[str, Any]) -> None:
    # pydantic-asyncapi 0.3.2 types Kafka *message* bindings as None (a bug: the spec allows
    # `key`), so those are checked by hand below and removed before the library validates.
    stripped = orjson.loads(orjson.dumps(document))
    components = stripped["components"]
    for message in [*components["messages"].values(), *components["messageTraits"].values()]:
        binding = message.pop("bindings", {}).get("kafka")
        if binding is not None:
            assert set(binding) <= {
                "key",
                "schemaIdLocation",
                "schemaIdPayloadEncoding",
                "schemaLookupStrategy",
                "bindingVersion",
            }
            Draft202012Validator.check_schema(binding["key"])
    parsed = AsyncAPI.model_validate(stripped)
    assert parsed.asyncapi == "3.0.0"

    for ref in refs(document):
        if ref.startswith("#/"):
            resolve(document, ref)  # raises KeyError when dangling
        else:
            assert (CONTRACTS / ref).is_file(), ref
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), (name, message)


def _documents() -> list[tuple[str, dict[str, Any]]]:
    data: list[EventData] = [
        BucketRequested(job_id=JOB, bucket_name="some-bucket"),
        BucketProcessing(job_id=JOB, bucket_name="some-bucket", attempt=2),
        BucketCreated(
            job_id=JOB,
            bucket_name="some-bucket",
            tx_hash="AB" * 32,
            bucket_id="x",
            bucket_created_at=1_764_000_000,
        ),
        BucketCreated(job_id=JOB, bucket_name="some-bucket", tx_hash=None, adopted=True),
        BucketCreated(job_id=JOB, bucket_name="some-bucket", tx_hash=HASH, block_number=7),
        BucketTransactionSigned(
            job_id=JOB,
            bucket_name="some-bucket",
            attempt=2,
            kind="create",
            signer="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",  # anvil's public dev account
            chain_id=31337,
            nonce=0,
            tx_hash=HASH,
            raw_transaction="0x02f8b1",
            max_fee_per_gas=2_000_000_000,
            max_priority_fee_per_gas=1_000_000_000,
            gas=300_000,
        ),
        BucketFailed(
            job_id=JOB,
            bucket_name="some-bucket",
            error="no gas",
            error_code="insufficient_funds",
            attempts=1,
        ),
    ]
    moment = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)
    return [
        (d.type, orjson.loads(encode(new_event(d, "/akave-gateway/test", time=moment))))
        for d in data
    ]


def test_encoded_events_validate_against_their_schema_and_the_envelope() -> None:
    envelope = validator(ENVELOPE)
    for event_type, doc in _documents():
        validator(event_type).validate(doc)
        envelope.validate(doc)
        for other in set(DATA_TYPES) - {event_type}:
            assert not validator(other).is_valid(doc), (event_type, other)


def _mutations(event_type: str, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    def changed(path: str, value: Any) -> dict[str, Any]:
        copy: dict[str, Any] = orjson.loads(orjson.dumps(doc))
        *parents, last = path.split(".")
        node = copy
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return copy

    common = [
        ("no data.job_id", changed("data.job_id", _DELETE)),
        ("job_id not a uuid", changed("data.job_id", "job-1")),
        ("empty bucket_name", changed("data.bucket_name", "")),
        ("no subject", changed("subject", _DELETE)),
        ("wrong specversion", changed("specversion", "0.3")),
        ("newer schema version", changed("schemaversion", 2)),
        ("time without a date", changed("time", "10:00:00")),
        ("data not an object", changed("data", [])),
    ]
    if event_type == "BucketProcessing":
        common.append(("attempt 0", changed("data.attempt", 0)))
    if event_type == "BucketCreated" and doc["data"]["tx_hash"] is not None:
        common.append(("uppercase hash", changed("data.tx_hash", "0x" + HASH[2:].upper())))
        common.append(("hash without 0x", changed("data.tx_hash", HASH[2:])))
    if event_type == "BucketCreated" and doc["data"].get("block_number") is not None:
        common.append(("negative block", changed("data.block_number", -1)))
    if event_type == "BucketTransactionSigned":
        common.append(("uppercase hash", changed("data.tx_hash", "0x" + HASH[2:].upper())))
        common.append(("no raw transaction", changed("data.raw_transaction", _DELETE)))
        common.append(("raw not hex", changed("data.raw_transaction", "0xzz")))
        common.append(("short signer", changed("data.signer", "0x1234")))
        common.append(("unknown kind", changed("data.kind", "fill")))
        common.append(("negative nonce", changed("data.nonce", -1)))
        common.append(("no attempt", changed("data.attempt", _DELETE)))
    if event_type == "BucketFailed":
        common.append(("bad error_code", changed("data.error_code", "Not-A-Code")))
        common.append(("no attempts", changed("data.attempts", _DELETE)))
    return common


_DELETE = object()


def test_mutated_events_fail_their_schema() -> None:
    for event_type, doc in _documents():
        check = validator(event_type)
        for what, mutated in _mutations(event_type, doc):
            assert not check.is_valid(mutated), f"{event_type}: {what} was accepted"
