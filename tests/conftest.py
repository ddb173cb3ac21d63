"""Session infrastructure: a real Kafka broker and a real PostgreSQL database.

`KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` in the environment point the suite at services
someone else runs. Otherwise, where a Docker engine answers and has (or can pull) the images,
testcontainers brings Redpanda and Postgres; elsewhere (these machines), the suite starts a
throwaway Kafka broker on free ports and uses the machine's PostgreSQL, with databases of its
own that it drops afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

from localinfra.kafka import LocalKafka
from localinfra.postgres import create_database, drop_database, ensure_postgres
from shared.migrations import migrate
from shared.settings import Settings
from tests.support import containers
from tests.support.stack import REPO, Stack, free_port
from tests.support.tcp_proxy import TcpProxy

TEST_DATABASE = "akave_gateway_test"
pytest_plugins = ["tests.chain.fixtures", "tests.support.evm_stack"]


def _given(name: str) -> str | None:
    return os.environ.get(name) or None


def _use_docker() -> bool:
    return not (_given("KAFKA_BOOTSTRAP_SERVERS") and _given("DATABASE_URL")) and (
        containers.docker_usable()
    )


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalKafka | None]:
    """The broker this suite started itself (outage tests stop and restart it), if any."""
    if _given("KAFKA_BOOTSTRAP_SERVERS") or _use_docker():
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
def kafka_bootstrap(kafka: LocalKafka | None) -> Iterator[str]:
    if kafka is not None:
        yield kafka.bootstrap_servers
    elif given := _given("KAFKA_BOOTSTRAP_SERVERS"):
        yield given
    else:
        with containers.redpanda() as bootstrap:
            yield bootstrap


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """A server where the suite may create databases of its own; None when DATABASE_URL names
    the one database to use."""
    if _given("DATABASE_URL"):
        yield None
    elif _use_docker():
        with containers.postgres() as url:
            yield url
    else:
        yield ensure_postgres(None)


@contextmanager
def own_database(server: str | None, name: str) -> Iterator[str]:
    """A migrated database: a new one on `server`, dropped afterwards, or DATABASE_URL's."""
    if server is None:
        url = ensure_postgres(os.environ["DATABASE_URL"])
        migrate(Settings(database_url=url))
        yield url
        return
    url = create_database(server, name)
    migrate(Settings(database_url=url))
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def database_url(postgres_server: str | None) -> Iterator[str]:
    with own_database(postgres_server, f"{TEST_DATABASE}_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="session")
def base_settings(kafka_bootstrap: str, database_url: str) -> Settings:
    """Settings every test starts from: fast retries. No chain: a test or stack that runs the
    executor puts it on an anvil chain of its own (tests/support/evm_stack.py)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_partitions=3,
        retry_delay_s=2.0,
        executor_session_timeout_ms=6000,
        log_level="INFO",
    )


@pytest.fixture(scope="module")
def stack_settings(
    request: pytest.FixtureRequest,
    base_settings: Settings,
    postgres_server: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """This module's settings: its own topic, database and (on the evm backend) anvil chain
    (`stack_chain`; `STACK_CHAIN = None`: the module's stack names its own), plus the module's
    STACK_SETTINGS."""
    overrides = getattr(request.module, "STACK_SETTINGS", {})
    chain: dict[str, object] = {}
    own_chain = getattr(request.module, "STACK_CHAIN", {}) is None  # the module brings one
    if overrides.get("akave_backend", base_settings.akave_backend) == "evm" and not own_chain:
        from tests.support.evm_stack import chain_settings, key_pool  # it imports this module

        on = request.getfixturevalue("stack_chain")
        chain = chain_settings(on.rpc_url, on.contract, key_pool(tmp_path_factory.mktemp("keys")))
    with own_database(postgres_server, f"akave_gw_{uuid.uuid4().hex[:10]}") as url:
        yield Stack.settings_for(base_settings, database_url=url, **{**chain, **overrides})


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


@pytest.fixture(scope="module")
def db_proxy(stack_settings: Settings) -> Iterator[TcpProxy]:
    """A TCP proxy in front of this module's Postgres server, to cut and restore it."""
    parts = urlsplit(stack_settings.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432, free_port())
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def proxied_stack(
    stack_settings: Settings, db_proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The usual stack, except that every service reaches Postgres through `db_proxy`; a
    module that wants it overrides `stack` with it."""
    parts = urlsplit(stack_settings.database_url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{db_proxy.port}"
    proxied = urlunsplit(parts._replace(netloc=netloc))
    running = Stack(
        stack_settings.model_copy(update={"database_url": proxied}), tmp_path_factory.mktemp("s")
    )
    running.start()
    yield running
    running.stop()
