"""The Akave private key never leaves the process that needs it: not in a log line, an event,
a dead-letter record, an error message or an HTTP answer, also when everything fails.

The real executor runs with AKAVE_BACKEND=akave against the stand-in SDK (tests/support/akave_stub)
made to fail with errors that echo the key in every spelling; the api and projector run
beside it with the same environment, on a real topic and database.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.kafka import make_producer
from shared.settings import Settings
from tests.support import AKAVE_STUB
from tests.support.stack import REPO, Stack, read_events, settings_env, unique_name

pytestmark = pytest.mark.slow

KEY = secrets.token_hex(32)  # this run's throwaway key
STUB_DIR = AKAVE_STUB
# The key as configured: 0x prefix, mixed case. Leaks are searched for in any case, 0x or not.
CONFIGURED = "0x" + "".join(c.upper() if i % 2 else c for i, c in enumerate(KEY))
LEAK = re.compile(re.escape(KEY), re.IGNORECASE)
STACK_SETTINGS = {
    "akave_backend": "akave",
    "akave_private_key": SecretStr(CONFIGURED),
    "akave_node_address": "node.invalid:5500",
    "retry_delay_s": 0.2,
    "max_attempts": 3,
    "log_level": "DEBUG",
}
# Runs the real executor CLI, after telling the stand-in SDK to fail with the key in its text.
FAILING_EXECUTOR = """
import os, akavesdk
key = os.environ["AKAVE_PRIVATE_KEY"]
bare = key[2:]
akavesdk.fail_next(f"dial tcp: handshake failed for signer {key}", "ipc")
akavesdk.fail_next(f"rpc unavailable; account 0X{bare.upper()} session lost", "view_bucket")
akavesdk.fail_next(f"insufficient funds for gas: {bare.lower()}", "create_bucket")
from cli.main import main
main(["executor"])
"""
BROKEN_SDK_EXECUTOR = """
import akavesdk
def broken(config):
    raise akavesdk.SDKError(f"invalid private key {config.private_key!r} for {config.address}")
akavesdk.SDK = broken
from cli.main import main
main(["executor"])
"""


def stub_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = settings_env(settings)
    env["PYTHONPATH"] = os.pathsep.join([str(STUB_DIR), str(REPO)])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """api + projector as usual; the executor on the failing stand-in SDK."""
    running = Stack(stack_settings, tmp_path_factory.mktemp("stack"))
    running.start("projector", "api")
    log = open(running.log_dir / "executor.log", "ab")  # noqa: SIM115 - lives with the process
    running.procs["executor"] = subprocess.Popen(
        [sys.executable, "-c", FAILING_EXECUTOR],
        cwd=REPO,
        env=stub_env(stack_settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield running
    finally:
        running.stop()


def assert_no_key(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    found = LEAK.search(text)
    assert found is None, (
        f"the private key leaked into {where}: ...{text[max(0, found.start() - 80) : found.end()]}"
    )


def record_texts(records: list[Any]) -> str:
    return "\n".join(
        repr((r.key, r.value, [(k, v) for k, v in (r.headers or ())])) for r in records
    )


async def test_the_key_appears_nowhere_when_every_chain_call_fails(stack: Stack) -> None:
    answers: list[str] = []
    async with stack.client() as client:
        accepted = await client.post("/buckets", json={"bucket_name": unique_name("leak")})
        answers.append(f"{accepted.status_code} {accepted.headers} {accepted.text}")
        assert accepted.status_code == 202, accepted.text
        job = await stack.wait_terminal(client, accepted.json()["job_id"], timeout=90)
        answers.append(str(job))
        for path in ("/buckets", "/health", f"/buckets/jobs/{job['job_id']}", "/openapi.json"):
            response = await client.get(path)
            answers.append(f"{response.status_code} {response.headers} {response.text}")

    # The failures really happened, and were masked rather than dropped.
    assert job["status"] == "failed", job
    assert job["error_code"] == "insufficient_funds", job
    assert job["attempts"] == 3, job
    assert "***" in job["error"], job

    # A record no consumer can read, so the dead-letter topic has something to check.
    producer = make_producer(stack.settings)
    await producer.start()
    try:
        await producer.send_and_wait(stack.settings.bucket_events_topic, b"{not json", key=b"x")
    finally:
        await producer.stop()
    parked: list[Any] = []
    for _ in range(100):
        parked = await read_events(stack.settings, stack.settings.dead_letter_topic)
        if parked:
            break
        await asyncio.sleep(0.1)
    assert parked, "the poison record was never parked"

    events = await read_events(stack.settings)
    assert [e for e in events if b"BucketFailed" in e.value], "no BucketFailed on the topic"
    assert_no_key("an event on the topic", record_texts(events))
    assert_no_key("a dead-letter record", record_texts(parked))
    assert_no_key("an HTTP answer", "\n".join(answers))
    logs = {path.name: path.read_text(errors="replace") for path in stack.log_dir.glob("*.log")}
    assert set(logs) == {"api.log", "executor.log", "projector.log"}
    assert "***" in logs["executor.log"], "the executor never logged a masked failure"
    for name, text in logs.items():
        assert_no_key(name, text)


def run_cli(code_or_command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code_or_command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_sdk_that_echoes_the_key_at_setup_stops_the_executor_without_it(
    stack_settings: Settings,
) -> None:
    done = run_cli(["-c", BROKEN_SDK_EXECUTOR], stub_env(stack_settings))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "cannot set up the Akave SDK" in output
    assert "***" in output
    assert_no_key("the executor's failure output", output)


def test_a_bad_setting_beside_the_key_is_reported_without_it(stack_settings: Settings) -> None:
    env = stub_env(stack_settings, AKAVE_MAX_CONCURRENCY="0", AKAVE_NODE_ADDRESS=CONFIGURED)
    done = run_cli(["-m", "cli", "executor"], env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "akave_max_concurrency" in output
    assert_no_key("the settings error", output)


@pytest.mark.parametrize("service", ["executor", "api", "projector"])
def test_a_key_file_others_can_read_stops_every_service(
    stack_settings: Settings, tmp_path: Path, service: str
) -> None:
    key_file = tmp_path / "akave.key"
    key_file.write_text(CONFIGURED + "\n")
    key_file.chmod(0o640)
    env = stub_env(stack_settings, AKAVE_PRIVATE_KEY_FILE=str(key_file))
    del env["AKAVE_PRIVATE_KEY"]
    done = run_cli(["-m", "cli", service], env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "refusing to start" in output
    assert "AKAVE_PRIVATE_KEY_FILE" in output and "0640" in output and "chmod 600" in output
    assert_no_key("the refusal", output)


def test_a_private_key_file_is_read_and_an_open_one_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "akave.key"
    key_file.write_text(f"  {CONFIGURED}\n")
    settings = Settings(_env_file=None, akave_private_key_file=key_file)  # type: ignore[call-arg]
    for private in (0o600, 0o400):
        key_file.chmod(private)
        assert settings.private_key() == CONFIGURED
    for shared in (0o604, 0o640, 0o660, 0o644, 0o601):
        key_file.chmod(shared)
        with pytest.raises(PermissionError, match="chmod 600") as refused:
            settings.private_key()
        assert_no_key("the refusal", str(refused.value))


def test_the_akave_backend_refuses_an_open_key_file_with_a_clear_error(tmp_path: Path) -> None:
    from services.executor.backends.akave_sdk import AkaveConfigurationError, AkaveSdkBackend

    key_file = tmp_path / "akave.key"
    key_file.write_text(CONFIGURED)
    key_file.chmod(0o644)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, akave_backend="akave", akave_private_key_file=key_file
    )
    with pytest.raises(AkaveConfigurationError, match=r"mode 0644.*chmod 600") as refused:
        AkaveSdkBackend.from_settings(settings)
    assert_no_key("the backend's refusal", str(refused.value))
