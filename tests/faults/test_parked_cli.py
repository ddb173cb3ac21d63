"""`akave-gateway parked list|redrive` as a real process, on records the real consumers parked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from shared.kafka import Appender
from shared.parked import REDRIVEN_FROM, read_parked
from tests.support.stack import REPO, Stack, read_events, settings_env, unique_name

pytestmark = pytest.mark.slow

# The projector as a later release would be: it knows schema version 2 of every event type.
UPGRADED_PROJECTOR = """
import shared.events as events
events.SCHEMA_VERSION = 2
for event_type in events.DATA_TYPES:
    events.UPCASTERS[(event_type, 1)] = lambda data: data
from cli.main import main
main(["projector"])
"""


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "parked", *args],
        cwd=REPO,
        env=settings_env(stack.settings),
        capture_output=True,
        text=True,
        timeout=90,
    )


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(stack, *args)
    assert done.returncode == 0, done.stderr
    return done


def start_upgraded_projector(stack: Stack) -> None:
    log = open(stack.log_dir / "projector-upgraded.log", "ab")  # noqa: SIM115
    stack.procs["projector"] = subprocess.Popen(
        [sys.executable, "-c", UPGRADED_PROJECTOR],
        cwd=REPO,
        env=settings_env(stack.settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def cli_json(stack: Stack, *args: str) -> list[dict[str, Any]]:
    parsed: list[dict[str, Any]] = json.loads(cli(stack, *args, "--json").stdout)
    return parsed


def request_v2(job_id: uuid.UUID, name: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/akave-gateway/api-next",
            "type": "BucketRequested",
            "subject": name,
            "time": "2026-11-28T10:00:00Z",
            "datacontenttype": "application/json",
            "schemaversion": 2,
            "data": {"job_id": str(job_id), "bucket_name": name},
        }
    )


async def projected(stack: Stack, client: httpx.AsyncClient, job_id: uuid.UUID) -> Any:
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(f"/buckets/jobs/{job_id}")
        if response.status_code == 200:
            return response.json()
        assert response.status_code in (404, 503), response.text
        assert time.monotonic() < deadline, stack.logs()
        await asyncio.sleep(0.2)


async def end_offsets(stack: Stack) -> int:
    return len(await read_events(stack.settings))


async def test_parked_records_are_listed_once_and_a_fixed_one_is_redriven_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    topic = stack.settings.bucket_events_topic
    name, job_id = unique_name("from-the-future"), uuid.uuid4()
    garbage_key = unique_name("garbage").encode()
    unknown = orjson.loads(request_v2(uuid.uuid4(), "x-y-z")) | {"type": "BucketRenamed"}
    appender = Appender(stack.settings)
    try:
        bad_json = await appender.send(topic, b"{not json", garbage_key, [("trace", b"t-1")])
        newer = await appender.send(
            topic, request_v2(job_id, name), name.encode(), [("content-type", b"x")]
        )
        await appender.send(topic, orjson.dumps(unknown), b"x-y-z")
    finally:
        await appender.stop()

    deadline = time.monotonic() + 60
    while True:  # both consumers park both records
        entries = await read_parked(stack.settings)
        if sorted(len(e.copies) for e in entries) == [2, 2]:
            break
        assert time.monotonic() < deadline, f"{entries}\n{stack.logs()}"
        await asyncio.sleep(0.3)

    listed = {(e["origin"]["partition"], e["origin"]["offset"]): e for e in cli_json(stack, "list")}
    assert set(listed) == {bad_json, newer}  # the unknown type is skipped, not parked
    for entry in listed.values():
        assert entry["consumers"] == ["executor", "projector"]
        assert entry["origin"]["topic"] == topic
        assert len(entry["dlq"]) == 2 and entry["id"] in entry["dlq"]
        assert entry["redriven_to"] is None
    assert "not JSON" in listed[bad_json]["errors"][0]
    assert listed[bad_json]["value_preview"] == "{not json"
    assert listed[bad_json]["key"] == garbage_key.decode()
    assert "schema version 2 is newer" in listed[newer]["errors"][0]
    human = cli(stack, "list").stdout
    assert human.count(f"{topic}:{newer[0]}:{newer[1]}") == 1
    assert "by executor,projector" in human

    before = await end_offsets(stack)
    dry = cli_json(stack, "redrive", "--all", "--dry-run")
    assert sorted(o["action"] for o in dry) == ["would redrive", "would redrive"]
    assert await end_offsets(stack) == before

    # The fix: the projector is upgraded to a release that reads schema version 2. The old
    # executor is stopped so that it does not park the redriven copy again.
    stack.stop("executor")
    stack.stop("projector")
    start_upgraded_projector(stack)

    # Any copy's DLQ position names the entry.
    chosen = listed[newer]["dlq"][-1]
    [outcome] = cli_json(stack, "redrive", chosen)
    assert outcome["action"] == "redriven" and outcome["id"] == listed[newer]["id"]
    assert outcome["to"].startswith(f"{topic}:")

    job = await projected(stack, client, job_id)
    assert job["bucket_name"] == name and job["status"] == "queued"

    records = await read_events(stack.settings)
    assert len(records) == before + 1
    copy = next(r for r in records if f"{topic}:{r.partition}:{r.offset}" == outcome["to"])
    assert copy.key == name.encode() and copy.value == request_v2_value(records, newer)
    headers = dict(copy.headers)
    assert headers[REDRIVEN_FROM] == f"{topic}:{newer[0]}:{newer[1]}".encode()
    assert headers["content-type"] == b"x"
    assert not [k for k in headers if k.startswith("dlq.")]

    again = cli_json(stack, "redrive", chosen)
    assert again == [{**outcome, "action": "already redriven"}]
    rest = cli_json(stack, "redrive", "--all", "--dry-run")
    assert sorted(o["action"] for o in rest) == ["already redriven", "would redrive"]
    assert await end_offsets(stack) == before + 1
    after = {(e["origin"]["partition"], e["origin"]["offset"]): e for e in cli_json(stack, "list")}
    assert after[newer]["redriven_to"] == outcome["to"]
    assert after[bad_json]["redriven_to"] is None


def request_v2_value(records: list[Any], at: tuple[int, int]) -> bytes:
    [original] = [r for r in records if (r.partition, r.offset) == at]
    value: bytes = original.value
    return value


async def test_unknown_position_is_refused_without_writing(stack: Stack) -> None:
    done = run_cli(stack, "redrive", "7:123456")
    assert done.returncode == 2
    assert "no parked record at 7:123456" in done.stderr
