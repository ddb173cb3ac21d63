"""`akave-gateway dev`: the whole gateway on one machine, for trying it out and developing.

Provisions PostgreSQL (the machine's, unless DATABASE_URL is set) and a local Kafka broker
(unless KAFKA_BOOTSTRAP_SERVERS is set), migrates, then supervises api, executor, projector
and notifier as child processes until Ctrl-C or SIGTERM, and stops everything it started,
JVM included.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from localinfra.kafka import LocalKafka
from localinfra.postgres import ensure_postgres
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import Settings

SERVICES = ("projector", "executor", "notifier", "api")
CHECKOUT = Path(__file__).resolve().parent.parent  # the broker's files go to its .local/


def run_dev(settings: Settings) -> int:
    given = settings.model_fields_set
    broker: LocalKafka | None = None
    if "database_url" not in given:
        settings = settings.model_copy(update={"database_url": ensure_postgres(None)})
    if "kafka_bootstrap_servers" not in given:
        port = int(os.environ.get("KAFKA_PORT", "9092"))
        broker = LocalKafka(CHECKOUT, name="dev", port=port, controller_port=port + 1, reuse=True)
        print(f"starting Kafka on 127.0.0.1:{port} ...", flush=True)
        broker.start()
        settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)
    try:
        migrate(settings)
        asyncio.run(ensure_topics(settings))
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        }
        for name in SERVICES:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "cli", name], env=env, start_new_session=True
            )
        print(
            f"\nAkave Async Gateway is running (backend: {settings.akave_backend})\n"
            f"  API      http://{settings.api_host}:{settings.api_port}  (docs at /docs)\n"
            f"  console  http://{settings.api_host}:{settings.api_port}/console\n"
            f"  Kafka    {settings.kafka_bootstrap_servers}\n"
            f"{metrics_lines(settings)}"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            broker.stop()
        print("stopped", flush=True)


def metrics_lines(settings: Settings) -> str:
    """Where each service's Prometheus metrics are (docs/operations.md)."""
    lines = []
    if settings.api_metrics:
        lines.append(f"  metrics  api       http://{settings.api_host}:{settings.api_port}/metrics")
    for name, port in (
        ("executor", settings.executor_metrics_port),
        ("projector", settings.projector_metrics_port),
        ("notifier", settings.notifier_metrics_port),
    ):
        if port:
            lines.append(f"  metrics  {name:<9} http://{settings.metrics_host}:{port}/metrics")
    return "".join(line + "\n" for line in lines)
