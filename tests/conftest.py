"""Session infrastructure: a real Kafka broker and a real PostgreSQL database.

`KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` in the environment point the suite at services
someone else runs; otherwise it starts a throwaway broker on free ports and uses the
machine's PostgreSQL with a fresh database of its own.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from localinfra.kafka import LocalKafka
from localinfra.postgres import create_database, drop_database, ensure_postgres
from services.cli import migrate
from shared.settings import Settings
from tests.stack import REPO, Stack, free_port

TEST_DATABASE = "akave_gateway_test"


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalKafka | None]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    # A broker of this session's own (name and ports), so two suites never share one.
    broker = LocalKafka(
        REPO, name=f"test-{os.getpid()}", port=free_port(), controller_port=free_port(), fresh=True
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        url = ensure_postgres(os.environ["DATABASE_URL"])
        migrate(Settings(database_url=url))
        yield url
        return
    url = create_database(ensure_postgres(None), f"{TEST_DATABASE}_{os.getpid()}")
    migrate(Settings(database_url=url))
    yield url
    drop_database(url)


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


def fresh_database(base: Settings) -> str:
    """A migrated database of its own (unless the suite was pointed at one by DATABASE_URL)."""
    if os.environ.get("DATABASE_URL"):
        return base.database_url
    url = create_database(ensure_postgres(None), f"akave_gw_{uuid.uuid4().hex[:10]}")
    migrate(Settings(database_url=url))
    return url


@pytest.fixture(scope="module")
def stack_settings(request: pytest.FixtureRequest, base_settings: Settings) -> Settings:
    """This module's settings: its own topic and database, plus the module's STACK_SETTINGS."""
    overrides = getattr(request.module, "STACK_SETTINGS", {})
    return Stack.settings_for(
        base_settings, database_url=fresh_database(base_settings), **overrides
    )


@pytest.fixture(scope="module")
def stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """api + executor + projector as OS processes on a topic and database of this module's own."""
    running = Stack(stack_settings, tmp_path_factory.mktemp("stack"))
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
