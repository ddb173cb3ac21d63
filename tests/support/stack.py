"""Runs the gateway's services as real OS processes for the tests, and talks to them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from shared.fold import TERMINAL
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKAVE_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name == "akave_private_key":
            value = (
                settings.akave_private_key.get_secret_value() if settings.akave_private_key else ""
            )
        env[name.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Stack:
    """api + executor + projector, each its own process, on one topic of their own.
    Any other service of `akave-gateway` (e.g. `start("notifier")`) starts the same way."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.base_url = f"http://{settings.api_host}:{settings.api_port}"

    @classmethod
    def settings_for(cls, base: Settings, **overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "bucket_events_topic": f"test-{tag}.bucket-events",
            "dead_letter_topic": f"test-{tag}.bucket-events.dlq",
            "executor_group_id": f"test-{tag}-executor",
            "notifier_group_id": f"test-{tag}-notifier",
            "api_port": free_port(),
        }
        values.update(overrides)
        return base.model_copy(update=values)

    def start(self, *names: str, env: dict[str, str] | None = None) -> None:
        """Start services by name; `executor:2` is a second instance of `executor`. `env`
        overrides settings of these processes only (e.g. a second instance's metrics port)."""
        for name in names or ("projector", "executor", "api"):
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "cli", name.partition(":")[0]],
                cwd=REPO,
                env={**settings_env(self.settings), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if "api" in (names or ("api",)):
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"API never became healthy; logs:\n{self.logs()}")

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.logs(name)}")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str | None = None, timeout: float = 20) -> dict[str, int]:
        """SIGTERM, then wait: returns each stopped service's exit code."""
        names = [name] if name else list(self.procs)
        for n in names:
            self.procs[n].send_signal(signal.SIGTERM)
        codes = {}
        for n in names:
            proc = self.procs.pop(n)
            try:
                codes[n] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[n] = proc.wait()
        return codes

    def logs(self, *names: str, tail: int = 60) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            if names and path.stem not in names:
                continue
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # HTTP helpers --------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)

    async def wait_terminal(
        self, client: httpx.AsyncClient, job_id: str, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any]
        while True:
            response = await client.get(f"/buckets/jobs/{job_id}")
            # 503 + Retry-After is the documented "try again" (e.g. the projector restarting
            # and behind the log); a client retries it. Anything else must be the job.
            if response.status_code == 503 and "retry-after" in response.headers:
                job = {"status": "unknown (503)"}
            else:
                assert response.status_code == 200, response.text
                job = response.json()
                if job["status"] in TERMINAL:
                    return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stuck at {job}\n{self.logs()}")
            await asyncio.sleep(0.05)


def unique_name(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def read_events(settings: Settings, topic: str | None = None) -> list[Any]:
    """Every record of the topic, from offset 0 to the current end (records, not decoded)."""
    from aiokafka import TopicPartition

    from shared.kafka import make_consumer, make_producer

    topic = topic or settings.bucket_events_topic
    producer = make_producer(settings)
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
    finally:
        await producer.stop()
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()
