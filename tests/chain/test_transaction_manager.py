"""The transaction manager on a real anvil chain with Akave-compatible Storage deployed.

Each test takes a chain of its own (automine for speed, 1-2 s blocks where timing matters),
deploys the Storage contract, and drives `TransactionManager` through one fault lever. The
witness is always the chain itself: CreateBucket logs per name, nonces, receipts.
Signing keys here are anvil's public dev keys (localinfra/dev_keys.py), public test data.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from localinfra.anvil import LocalAnvil
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.chain import storage_contract
from services.executor.chain.keys import SigningKey
from services.executor.chain.lane import LaneConfig
from services.executor.chain.manager import TransactionManager
from services.executor.chain.records import (
    AlreadyExists,
    Attempt,
    Created,
    Outcome,
    Refused,
)
from services.executor.chain.rpc import JsonRpc
from tests.chain.fixtures import AnvilFactory
from tests.tcp_proxy import TcpProxy

AKAVE_CONTRACTS = Path("/work/shared/akave-contracts")
DEPLOYER_KEY = DEV_ACCOUNTS[9][1]  # deploys; never signs creates
KEY = DEV_ACCOUNTS[1][1]
ADDRESS = DEV_ACCOUNTS[1][0]
GWEI = 10**9


def deploy_storage(chain: LocalAnvil) -> str:
    """The Storage contract's address on `chain`."""
    if not (AKAVE_CONTRACTS / "deploy.py").exists():
        pytest.skip(f"no Storage contract to deploy: {AKAVE_CONTRACTS} is missing")
    result = subprocess.run(
        [sys.executable, str(AKAVE_CONTRACTS / "deploy.py"), chain.rpc_url, DEPLOYER_KEY],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


class Recorder:
    """The journal: what the job flow would append to the log, in order."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.fail_next = False

    async def __call__(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def of(self, name: str) -> list[Attempt]:
        return [a for a in self.attempts if a.bucket_name == name]


class Harness:
    def __init__(self, chain: LocalAnvil, contract: str, rpc_url: str | None = None) -> None:
        self.chain = chain
        self.contract = contract
        self.rpc_url = rpc_url or chain.rpc_url
        self.journal = Recorder()
        self.managers: list[TransactionManager] = []
        self.rpcs: list[JsonRpc] = []

    async def manager(self, keys: list[str] | None = None, **options: Any) -> TransactionManager:
        poll = options.pop("poll_interval_s", 0.05)
        config = LaneConfig(
            chain_id=self.chain.chain_id,
            contract=self.contract,
            **{"backoff_s": 0.1, "backoff_max_s": 0.5, **options},
        )
        rpc = JsonRpc(self.rpc_url, timeout_s=2.0)
        self.rpcs.append(rpc)
        manager = TransactionManager(
            rpc, [SigningKey(k) for k in keys or [KEY]], config, poll_interval_s=poll
        )
        await manager.start()
        self.managers.append(manager)
        return manager

    async def close(self) -> None:
        for manager in self.managers:
            await manager.close()
        for rpc in self.rpcs:
            await rpc.close()

    def create_logs(self) -> Counter[str]:
        """CreateBucket logs on the chain per owner-name id (the chain's own witness)."""
        logs = self.chain.rpc(
            "eth_getLogs",
            {
                "address": self.contract,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [storage_contract.CREATE_BUCKET_TOPIC],
            },
        )
        return Counter(entry["topics"][1] for entry in logs)


def bucket_id(name: str, owner: str = ADDRESS) -> str:
    return "0x" + keccak(name.encode() + bytes.fromhex(owner[2:])).hex()


@pytest.fixture
async def harness(anvil_factory: AnvilFactory) -> AsyncIterator[Harness]:
    chain = anvil_factory(block_time=None)
    h = Harness(chain, deploy_storage(chain))
    try:
        yield h
    finally:
        await h.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def assert_created_once(h: Harness, outcomes: dict[str, Outcome]) -> None:
    logs = h.create_logs()
    for name, outcome in outcomes.items():
        assert isinstance(outcome, Created), (name, outcome)
        assert outcome.bucket_id == bucket_id(name)
        assert logs[bucket_id(name)] == 1, name
    assert sum(logs.values()) == len(outcomes)


async def create_all(manager: TransactionManager, names: list[str], journal: Recorder) -> dict[str, Outcome]:
    results = await asyncio.gather(*(manager.create(name, journal) for name in names))
    return dict(zip(names, results, strict=True))


async def test_fifty_concurrent_creates_use_consecutive_nonces_and_each_name_once(
    harness: Harness,
) -> None:
    manager = await harness.manager()
    start = harness.chain.nonce(ADDRESS)
    names = [f"bucket-{i}" for i in range(50)]
    outcomes = await asyncio.wait_for(create_all(manager, names, harness.journal), 60)
    assert_created_once(harness, outcomes)
    nonces = sorted(a.nonce for a in harness.journal.attempts)
    assert nonces == list(range(start, start + 50))
    assert harness.chain.nonce(ADDRESS) == start + 50
    again = await asyncio.wait_for(manager.create("bucket-7", harness.journal), 20)
    assert isinstance(again, AlreadyExists)


async def test_no_more_than_max_in_flight_transactions_at_once(harness: Harness) -> None:
    manager = await harness.manager(max_in_flight=4)
    lane = manager.lane_for("capped")
    harness.chain.set_automine(False)  # nothing is mined until the check below is done
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, lane.status().in_flight)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    names = [f"capped-{i}" for i in range(10)]
    task = asyncio.create_task(create_all(manager, names, harness.journal))
    await asyncio.sleep(1.0)
    assert len(harness.journal.attempts) == 4  # the other six wait for room, unsigned
    harness.chain.set_interval_mining(1)
    outcomes = await asyncio.wait_for(task, 60)
    watcher.cancel()
    assert peak == 4
    assert_created_once(harness, outcomes)
