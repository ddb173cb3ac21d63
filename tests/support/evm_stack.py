"""The gateway's services as OS processes on a real EVM chain of the test's own (anvil, 2 s
blocks, our Storage contract), and the chain-side witnesses the tests read: CreateBucket logs
per name and the receipts of every transaction the log says we signed.

Loaded as a plugin by tests/conftest.py: `evm_stack_factory(**settings)` starts a stack;
`evm_stack_factory(rpc_proxy=True)` puts a `TcpProxy` between the services and the chain (the
test's own reads still go straight to anvil), so a test can cut the services' RPC.

The signing key is anvil's public dev key 2 (public test data), given as a key pool file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from eth_utils import keccak

from localinfra.anvil import LocalAnvil
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.chain import reverts
from shared.fold import TERMINAL
from shared.settings import Settings
from tests.chain.fixtures import AnvilFactory
from tests.conftest import own_database
from tests.support.stack import Stack, free_port, read_events
from tests.support.tcp_proxy import TcpProxy

ADDRESS, KEY = DEV_ACCOUNTS[2]


def bucket_id(name: str) -> str:
    return "0x" + keccak(name.encode() + bytes.fromhex(ADDRESS[2:])).hex()


class EvmStack:
    """A stack of this test's own on a 2 s-block chain of its own."""

    def __init__(
        self, chain: LocalAnvil, contract: str, stack: Stack, proxy: TcpProxy | None = None
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.stack = stack
        self.proxy = proxy  # between the services and the chain, when asked for

    def create_logs(self) -> Counter[str]:
        logs = self.chain.rpc(
            "eth_getLogs",
            {
                "address": self.contract,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [reverts.CREATE_BUCKET_TOPIC],
            },
        )
        return Counter(entry["topics"][1] for entry in logs)

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        answer: dict[str, Any] | None = self.chain.rpc("eth_getTransactionReceipt", tx_hash)
        return answer

    async def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in await read_events(self.stack.settings)]


@pytest.fixture
def evm_stack_factory(
    anvil_factory: AnvilFactory,
    base_settings: Settings,
    postgres_server: str | None,
    tmp_path: Path,
) -> Iterator[Any]:
    started: list[Stack] = []
    proxies: list[TcpProxy] = []
    databases = contextlib.ExitStack()

    def start(rpc_proxy: bool = False, **overrides: Any) -> EvmStack:
        chain = anvil_factory(block_time=2.0)
        contract = deploy_storage(chain)
        proxy = None
        rpc_url = chain.rpc_url
        if rpc_proxy:
            proxy = TcpProxy("127.0.0.1", chain.port, free_port())
            proxy.start()
            proxies.append(proxy)
            rpc_url = f"http://127.0.0.1:{proxy.port}"
        pool = tmp_path / "key-pool"
        pool.write_text(KEY + "\n")
        pool.chmod(0o600)
        database = databases.enter_context(
            own_database(postgres_server, f"akave_gw_evm_{time.time_ns()}")
        )
        settings = Stack.settings_for(
            base_settings,
            database_url=database,
            akave_backend="evm",
            chain_rpc_url=rpc_url,
            chain_contract_address=contract,
            chain_key_pool_file=pool,
            chain_poll_interval_s=0.2,
            **overrides,
        )
        log_dir = tmp_path / f"stack-{len(started)}"
        log_dir.mkdir()
        stack = Stack(settings, log_dir)
        started.append(stack)
        stack.start()
        return EvmStack(chain, contract, stack, proxy)

    try:
        yield start
    finally:
        for stack in started:
            stack.stop()
        for proxy in proxies:
            proxy.stop()
        databases.close()  # drops them


async def submit(client: httpx.AsyncClient, names: list[str], at_once: int = 50) -> list[str]:
    """POST a create of each name; every one must be accepted (202). Returns the job ids."""
    limit = asyncio.Semaphore(at_once)

    async def post(name: str) -> str:
        async with limit:
            response = await client.post("/buckets", json={"bucket_name": name})
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    return list(await asyncio.gather(*(post(n) for n in names)))


async def wait_all_terminal(
    stack: Stack, client: httpx.AsyncClient, ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Every job's final answer from the API, once the read model has them all terminal
    (counted in Postgres: polling 500 jobs through the API would load the machine)."""
    url = stack.settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as db:
        while True:
            row = db.execute(
                "SELECT count(*) FROM bucket_jobs WHERE id = ANY(%s) AND status = ANY(%s)",
                ([uuid.UUID(j) for j in ids], [s.value for s in TERMINAL]),
            ).fetchone()
            if row is not None and row[0] == len(ids):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{row} of {len(ids)} jobs terminal\n" + stack.logs())
            await asyncio.sleep(0.5)
    limit = asyncio.Semaphore(16)

    async def answer(job_id: str) -> dict[str, Any]:
        async with limit:
            response = await client.get(f"/buckets/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        assert job["status"] in TERMINAL, job
        return job

    return dict(zip(ids, await asyncio.gather(*(answer(j) for j in ids)), strict=True))


def signed_hashes(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Bucket name -> the hashes of every transaction the log says we signed for it."""
    hashes: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "BucketTransactionSigned":
            hashes.setdefault(event["data"]["bucket_name"], []).append(event["data"]["tx_hash"])
    return hashes
