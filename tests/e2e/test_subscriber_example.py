"""examples/subscriber runs as customers would run it, against the real topic of a real stack
(its executor on an anvil chain of the module's own, 0.25 s blocks, our contract)."""

from __future__ import annotations

import ast
import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from jsonschema import Draft202012Validator

from shared.event_schemas import SCHEMA_DIR
from shared.events import DATA_TYPES, BucketCreated, new_event
from shared.kafka import Appender, partition_for
from tests.support.evm_stack import StackChain
from tests.support.stack import REPO, Stack, read_events, unique_name

STACK_CHAIN = {"block_time": 0.25}  # the key's funds go and come back (StackChain.unfunded)
STACK_SETTINGS = {"chain_insufficient_funds_wait_s": 1.0}
pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "subscriber" / "subscriber.py"
UNKNOWN = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "/somewhere-else",
    "type": "BucketRenamed",
    "subject": "old-name",
    "time": "2026-11-28T10:00:00Z",
    "data": {"job_id": str(uuid.uuid4()), "bucket_name": "old-name"},
}


@pytest.fixture
def subscriber(stack: Stack, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    out, group = tmp_path / "created.jsonl", f"subscriber-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap-servers",
            stack.settings.kafka_bootstrap_servers,
            "--topic",
            stack.settings.bucket_events_topic,
            "--group",
            group,
            "--out",
            str(out),
        ],
        cwd=tmp_path,  # not the repository: it must not need the gateway's code
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, out, group
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def committed(stack: Stack, group: str) -> dict[int, int]:
    topic = stack.settings.bucket_events_topic
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(topic, p)) or 0
            for p in range(stack.settings.topic_partitions)
        }
    finally:
        await consumer.stop()


def test_example_depends_on_aiokafka_and_the_standard_library_only() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"aiokafka"}


async def test_subscriber_records_exactly_the_created_buckets_and_skips_the_rest(
    stack: Stack,
    client: httpx.AsyncClient,
    subscriber: tuple[subprocess.Popen[str], Path, str],
    stack_chain: StackChain,
) -> None:
    proc, out, group = subscriber
    topic = stack.settings.bucket_events_topic
    appender = Appender(stack.settings)
    try:  # before any job: the subscriber has to get past these to see them
        unknown_at = await appender.send(topic, orjson.dumps(UNKNOWN), b"old-name")
        garbage_at = await appender.send(topic, b"\x00\xffnot an event", b"old-name")
    finally:
        await appender.stop()

    names = [unique_name("sub") for _ in range(3)]
    accepted = [(await client.post("/buckets", json={"bucket_name": n})).json() for n in names]
    jobs = await asyncio.gather(*(stack.wait_terminal(client, a["job_id"]) for a in accepted))
    with stack_chain.unfunded():  # a job that fails for real: the key cannot pay
        doomed = (await client.post("/buckets", json={"bucket_name": unique_name("sub-x")})).json()
        jobs.append(await stack.wait_terminal(client, doomed["job_id"]))
    created = {j["job_id"]: j for j in jobs if j["status"] == "completed"}
    assert len(created) == 3 and jobs[-1]["status"] == "failed"

    deadline = time.monotonic() + 30
    while len(lines(out)) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"subscriber saw {lines(out)}"
        await asyncio.sleep(0.2)

    # A BucketCreated of another job for a name already created: it does not own the name.
    owned = next(iter(created.values()))
    intruder = uuid.uuid4()
    forged = new_event(
        BucketCreated(job_id=intruder, bucket_name=owned["bucket_name"], tx_hash="0x" + "1" * 64),
        "/akave-gateway/executor",
    )
    appender = Appender(stack.settings)
    try:
        forged_at = await appender.append(topic, forged)
    finally:
        await appender.stop()

    records = await read_events(stack.settings)
    ends = {
        p: 1 + max((r.offset for r in records if r.partition == p), default=-1)
        for p in range(stack.settings.topic_partitions)
    }
    deadline = time.monotonic() + 30
    while (offsets := await committed(stack, group)) != ends:
        assert time.monotonic() < deadline, f"committed {offsets}, log ends at {ends}"
        await asyncio.sleep(0.3)

    seen = lines(out)
    assert sorted(line["job_id"] for line in seen) == sorted(created)
    for line in seen:
        job = created[line["job_id"]]
        assert (line["bucket_name"], line["tx_hash"]) == (job["bucket_name"], job["tx_hash"])

    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert sorted(stdout.splitlines()) == sorted(
        f"bucket created: {j['bucket_name']} job={j['job_id']} tx={j['tx_hash']}"
        for j in created.values()
    )
    assert f"skipped {topic}:{unknown_at[0]}:{unknown_at[1]}: unknown type BucketRenamed" in stderr
    assert f"skipped {topic}:{garbage_at[0]}:{garbage_at[1]}: malformed: not JSON" in stderr
    assert (
        f"skipped {topic}:{forged_at[0]}:{forged_at[1]}: {owned['bucket_name']} already belongs "
        f"to job {owned['job_id']}; the gateway fails job {intruder}"
    ) in stderr
    assert stderr.count("skipped ") == 3
    assert f"stopped handled=3 ignored={len(records) - 3 - 3} skipped=3" in stderr


async def test_every_event_the_services_wrote_matches_the_published_schema(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    accepted = await client.post("/buckets", json={"bucket_name": unique_name("schema")})
    await stack.wait_terminal(client, accepted.json()["job_id"])
    validators = {
        t: Draft202012Validator(
            orjson.loads((SCHEMA_DIR / f"{t}.json").read_bytes()),
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        for t in DATA_TYPES
    }
    checked = 0
    for record in await read_events(stack.settings):
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue  # the garbage record injected above
        if doc.get("source", "").startswith("/akave-gateway/"):
            validators[doc["type"]].validate(doc)
            assert record.key == doc["subject"].encode()
            assert record.partition == partition_for(
                doc["subject"], stack.settings.topic_partitions
            )
            checked += 1
    assert checked >= 3  # at least the request, attempt and outcome of the job above
