"""Session infrastructure: a real Kafka broker and a real PostgreSQL database.

`KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` in the environment point the suite at services
someone else runs; otherwise it starts a throwaway broker (ports 29092/29093) and uses the
machine's PostgreSQL with a fresh database of its own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from localinfra.kafka import LocalKafka
from localinfra.postgres import create_database, ensure_postgres
from services.cli import migrate
from shared.settings import Settings
from tests.stack import REPO, Stack

TEST_DATABASE = "akave_gateway_test"


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalKafka | None]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    broker = LocalKafka(REPO, name="test", port=29092, controller_port=29093, fresh=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        url = ensure_postgres(os.environ["DATABASE_URL"])
    else:
        url = create_database(ensure_postgres(None), TEST_DATABASE)
    migrate(Settings(database_url=url))
    return url


@pytest.fixture(scope="session")
def base_settings(kafka: LocalKafka | None, database_url: str) -> Settings:
    """Settings every test starts from: fast retries, a quick simulated chain."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        kafka_bootstrap_servers=(
            kafka.bootstrap_servers if kafka else os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        ),
        topic_partitions=3,
        retry_delay_s=2.0,
        sim_latency_ms=50,
        executor_session_timeout_ms=6000,
        log_level="INFO",
    )


@pytest.fixture(scope="module")
def stack(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """api + executor + projector as OS processes on a topic of this module's own."""
    running = Stack(Stack.settings_for(base_settings), tmp_path_factory.mktemp("stack"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[object]:
    async with stack.client() as http:
        yield http


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
