"""The gateway's services as OS processes on a real EVM chain of the test's own (anvil with
our Storage contract), and the chain-side witnesses the tests read: CreateBucket logs per name
and the receipts of every transaction the log says we signed.

Loaded as a plugin by tests/conftest.py: `evm_stack_factory(**settings)` starts a stack on a
chain with 2 s blocks; `evm_stack_factory(block_time=None)` on an automining one (a block per
transaction) where the test does not time blocks; `evm_stack_factory(rpc_proxy=True)` puts a
`TcpProxy` between the services and the chain (the test's own reads still go straight to
anvil), so a test can cut the services' RPC.

`stack_chain` is the chain of a module's shared `stack` (tests/conftest.py): automining unless
the module's `STACK_CHAIN` says `{"block_time": seconds}` (a module that takes the key's
funds away, `StackChain.unfunded`); with `{"rpc_faults": True}` the
services reach it through an `RpcFaults` forwarder (tests/support/rpc_faults.py), so a test can
fail one name's chain reads.

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
from tests.chain.fixtures import AnvilFactory, _discard, _new_chain
from tests.conftest import own_database
from tests.support.rpc_faults import RpcFaults
from tests.support.stack import Stack, free_port, read_events
from tests.support.tcp_proxy import TcpProxy

ADDRESS, KEY = DEV_ACCOUNTS[2]


def bucket_id(name: str) -> str:
    return "0x" + keccak(name.encode() + bytes.fromhex(ADDRESS[2:])).hex()


def key_pool(folder: Path) -> Path:
    """A key pool file with dev key 2 (public test data), readable by its owner only."""
    pool = folder / "key-pool"
    pool.write_text(KEY + "\n")
    pool.chmod(0o600)
    return pool


def chain_settings(rpc_url: str, contract: str, pool: Path) -> dict[str, Any]:
    """The settings that put a stack's executor on a chain with our contract."""
    return {
        "akave_backend": "evm",
        "chain_rpc_url": rpc_url,
        "chain_contract_address": contract,
        "chain_key_pool_file": pool,
        "chain_poll_interval_s": 0.2,
    }


def create_logs(chain: LocalAnvil, contract: str) -> Counter[str]:
    """Bucket id -> how many CreateBucket logs the contract has for it."""
    logs = chain.rpc(
        "eth_getLogs",
        {
            "address": contract,
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [reverts.CREATE_BUCKET_TOPIC],
        },
    )
    return Counter(entry["topics"][1] for entry in logs)


class StackChain:
    """The chain of a module's `stack`: anvil, our contract on it, and the forwarder the
    services reach it through when the module asked for RPC faults."""

    def __init__(self, chain: LocalAnvil, contract: str, faults: RpcFaults | None) -> None:
        self.automines = chain.block_time is None
        self.chain = chain
        self.contract = contract
        self.faults = faults

    @property
    def rpc_url(self) -> str:
        return self.faults.url if self.faults is not None else self.chain.rpc_url

    def created(self, name: str) -> int:
        """How many CreateBucket logs the chain has for `name` (signed with the stack's key)."""
        return create_logs(self.chain, self.contract)[bucket_id(name)]

    @contextlib.contextmanager
    def unfunded(self) -> Iterator[None]:
        """The signing key without funds (its creates are refused with `insufficient_funds`
        once `CHAIN_INSUFFICIENT_FUNDS_WAIT_S` is over), funded again afterwards. Only on a
        chain that makes blocks (`STACK_CHAIN = {"block_time": ...}`): a paused lane judges
        its waiting creates, fills the nonces they leave, and resumes on new blocks, as on a
        live chain; an automining chain makes none while nothing is sent."""
        assert not self.automines, "unfunded() needs a chain with a block time"
        funds = self.chain.balance(ADDRESS)
        self.chain.set_balance(ADDRESS, 0)
        try:
            yield
        finally:
            self.chain.set_balance(ADDRESS, funds)

    @contextlib.contextmanager
    def not_mining(self) -> Iterator[None]:
        """An automining chain that mines nothing meanwhile (a create waits in the mempool,
        its job `processing`), then mines what is pending and automines again."""
        assert self.automines, "not_mining() is for an automining chain"
        self.chain.set_automine(False)
        try:
            yield
        finally:
            self.chain.set_automine(True)
            self.chain.mine()


@pytest.fixture(scope="module")
def stack_chain(request: pytest.FixtureRequest) -> Iterator[StackChain]:
    options: dict[str, Any] = getattr(request.module, "STACK_CHAIN", {})
    chain = _new_chain(block_time=options.get("block_time"))
    chain.start()
    faults = RpcFaults(chain.rpc_url) if options.get("rpc_faults") else None
    try:
        contract = deploy_storage(chain)
        if faults is not None:
            faults.start()
        yield StackChain(chain, contract, faults)
    finally:
        if faults is not None:
            faults.stop()
        _discard(chain)


class EvmStack:
    """A stack of this test's own on a chain of its own."""

    def __init__(
        self, chain: LocalAnvil, contract: str, stack: Stack, proxy: TcpProxy | None = None
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.stack = stack
        self.proxy = proxy  # between the services and the chain, when asked for

    def create_logs(self) -> Counter[str]:
        return create_logs(self.chain, self.contract)

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

    def start(
        rpc_proxy: bool = False, block_time: float | None = 2.0, **overrides: Any
    ) -> EvmStack:
        chain = anvil_factory(block_time=block_time)
        contract = deploy_storage(chain)
        proxy = None
        rpc_url = chain.rpc_url
        if rpc_proxy:
            proxy = TcpProxy("127.0.0.1", chain.port, free_port())
            proxy.start()
            proxies.append(proxy)
            rpc_url = f"http://127.0.0.1:{proxy.port}"
        database = databases.enter_context(
            own_database(postgres_server, f"akave_gw_evm_{time.time_ns()}")
        )
        settings = Stack.settings_for(
            base_settings,
            database_url=database,
            **{**chain_settings(rpc_url, contract, key_pool(tmp_path)), **overrides},
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
