"""Two executor processes with one signing key, on a real anvil chain (2 s blocks), real Kafka
and Postgres: one signs, the other is a standby; SIGKILL of the signer hands the key over
within 15 s; a signer that loses its lock signs nothing until it holds it again, in its own
process; /health shows a paused lane with its balance, and a lane nobody publishes as stale;
the signer's /metrics shows its lane and what it mined, a standby's that it is one.

The witness is the chain: every transaction from the key, its nonce and receipt, and the
CreateBucket logs per name. The key is one of anvil's public dev keys (public test data).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from localinfra.anvil import LocalAnvil
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.chain import reverts
from services.executor.chain.fence import libpq_url, lock_key
from shared import metrics
from shared.settings import Settings
from tests.chain.fixtures import _discard, _new_chain
from tests.observability.scrape import Samples, gateway_series, scrape, value
from tests.support.stack import Stack, free_port, unique_name

pytestmark = pytest.mark.slow
ADDRESS, KEY = DEV_ACCOUNTS[5]
TAKEOVER_LIMIT_S = 15.0
STACK_CHAIN = None  # the stack below runs on `chain`, with its own key


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalAnvil]:
    anvil = _new_chain(block_time=2.0)
    anvil.start()
    try:
        yield anvil
    finally:
        _discard(anvil)


@pytest.fixture(scope="module")
def contract(chain: LocalAnvil) -> str:
    return deploy_storage(chain)


STANDBY_PORT = free_port()  # the second executor's metrics


@pytest.fixture(scope="module")
def stack(
    stack_settings: Settings,
    chain: LocalAnvil,
    contract: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """projector + api + two executors with one key; `executor` signs, `executor:2` waits."""
    settings = stack_settings.model_copy(
        update={
            "akave_backend": "evm",
            "chain_rpc_url": chain.rpc_url,
            "chain_contract_address": contract,
            "chain_id": chain.chain_id,
            "akave_private_key": SecretStr(KEY),
            "executor_session_timeout_ms": 10_000,  # the default: it bounds the handover
            "chain_lane_status_interval_s": 0.5,
            "chain_lane_status_stale_s": 5.0,
            "executor_metrics_port": free_port(),  # the signer's; the standby's is STANDBY_PORT
        }
    )
    running = Stack(settings, tmp_path_factory.mktemp("fencing"))
    try:
        running.start("projector", "executor")
        wait_for_log(running, "executor", "this executor signs")
        running.start("executor:2", env={"EXECUTOR_METRICS_PORT": str(STANDBY_PORT)})
        running.start("api")
        wait_for_log(running, "executor:2", "standby")
        yield running
    finally:
        running.stop()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as http:
        yield http


def log_text(stack: Stack, name: str) -> str:
    path: Path = stack.log_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_log(stack: Stack, name: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log_text(stack, name):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} never logged {text!r}:\n{stack.logs()}")
        stack.assert_alive()
        time.sleep(0.2)


def our_transactions(chain: LocalAnvil) -> list[dict[str, Any]]:
    """Every mined transaction sent by ADDRESS, with its receipt, in chain order."""
    found = []
    for number in range(chain.block_number() + 1):
        block = chain.rpc("eth_getBlockByNumber", hex(number), True)
        for tx in block["transactions"]:
            if tx["from"].lower() == ADDRESS.lower():
                tx["receipt"] = chain.rpc("eth_getTransactionReceipt", tx["hash"])
                found.append(tx)
    return found


def creates_per_name(transactions: list[dict[str, Any]]) -> Counter[str]:
    """CreateBucket logs of our transactions, counted per bucket name (from the calldata)."""
    from eth_abi.abi import decode

    counts: Counter[str] = Counter()
    for tx in transactions:
        logs = tx["receipt"]["logs"]
        if any(e["topics"][0].lower() == reverts.CREATE_BUCKET_TOPIC for e in logs):
            (name,) = decode(["string"], bytes.fromhex(tx["input"][10:]))
            counts[name] += 1
    return counts


def assert_clean(chain: LocalAnvil, names: list[str]) -> None:
    """No nonce used twice, nothing reverted, exactly one CreateBucket per name."""
    transactions = our_transactions(chain)
    nonces = [int(tx["nonce"], 16) for tx in transactions]
    assert len(nonces) == len(set(nonces))
    assert nonces == list(range(len(nonces))), "a nonce gap or a filler: two signers collided"
    reverted = [tx["hash"] for tx in transactions if int(tx["receipt"]["status"], 16) != 1]
    assert reverted == []
    counts = creates_per_name(transactions)
    assert {name: counts[name] for name in names} == dict.fromkeys(names, 1)
    assert len(transactions) == sum(counts.values()), "a transaction that created nothing"


def executor_metrics(stack: Stack, port: int | None = None) -> Samples:
    s = stack.settings
    return scrape(f"http://{s.metrics_host}:{port or s.executor_metrics_port}/metrics")


async def submit(client: httpx.AsyncClient, names: list[str]) -> list[str]:
    ids = []
    for name in names:
        response = await client.post("/buckets", json={"bucket_name": name})
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


async def complete(stack: Stack, client: httpx.AsyncClient, ids: list[str]) -> None:
    jobs = await asyncio.gather(*(stack.wait_terminal(client, i, timeout=120) for i in ids))
    assert [job["status"] for job in jobs] == ["completed"] * len(ids), jobs


async def test_two_executors_with_one_key_never_collide(
    stack: Stack, client: httpx.AsyncClient, chain: LocalAnvil
) -> None:
    names = [unique_name("fence") for _ in range(20)]
    await complete(stack, client, await submit(client, names))
    assert_clean(chain, names)
    assert "signer locks held" not in log_text(stack, "executor:2")

    samples = executor_metrics(stack)
    assert value(samples, "akave_executor_standby") == 0
    standby = executor_metrics(stack, STANDBY_PORT)  # alive and saying what it is, no lanes
    assert value(standby, "akave_executor_standby") == 1
    lane_gauges = {
        m.name for m in metrics.ALL if m.name.startswith("akave_chain_") and m.kind == "gauge"
    }
    assert not [name for name, _ in standby if name in lane_gauges]
    assert gateway_series(samples) <= metrics.exported_series()
    always = {s for m in metrics.ALL if m.name.startswith("akave_chain_") and m.kind != "counter"
              for s in m.series()}  # fmt: skip
    assert always <= gateway_series(samples)  # counters appear once something is counted
    mined = our_transactions(chain)
    assert value(samples, "akave_chain_next_nonce", key=ADDRESS) == len(mined) == len(names)
    assert value(samples, "akave_chain_in_flight", key=ADDRESS) == 0
    assert value(samples, "akave_chain_lane_paused", key=ADDRESS) == 0
    assert value(samples, "akave_chain_balance_wei", key=ADDRESS) == float(chain.balance(ADDRESS))
    assert value(samples, "akave_chain_gas_price_paid_wei_count") == len(mined)
    paid = sum(int(tx["receipt"]["effectiveGasPrice"], 16) for tx in mined)
    assert value(samples, "akave_chain_gas_price_paid_wei_sum") == float(paid)
    assert value(samples, "akave_chain_receipt_seconds_count") == len(mined)
    assert not [name for name, _ in samples if name == "akave_chain_reverts_total"]


async def test_health_shows_a_paused_lane_with_its_balance_and_recovers(
    stack: Stack, client: httpx.AsyncClient, chain: LocalAnvil
) -> None:
    health = (await client.get("/health")).json()
    assert health["status"] == "ok", health
    assert [lane["address"] for lane in health["lanes"]] == [ADDRESS]

    balance = chain.balance(ADDRESS)
    chain.set_balance(ADDRESS, 0)
    try:
        (job_id,) = await submit(client, [unique_name("broke")])
        deadline = time.monotonic() + 30
        while True:
            response = await client.get("/health")
            body = response.json()
            (lane,) = body["lanes"]
            # the balance is the one read at the latest block: 0 within a block of the pause
            if lane["state"] == "paused" and lane["balance_wei"] == "0":
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
        assert response.status_code == 200
        assert body["status"].startswith("degraded: ") and ADDRESS in body["status"]
        assert lane["reason"]
        paused = executor_metrics(stack)  # read at the same latest block or a later one
        assert value(paused, "akave_chain_lane_paused", key=ADDRESS) == 1
        assert value(paused, "akave_chain_balance_wei", key=ADDRESS) == 0
    finally:
        chain.set_balance(ADDRESS, balance)
    await complete(stack, client, [job_id])
    deadline = time.monotonic() + 30
    while (body := (await client.get("/health")).json())["status"] != "ok":
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)
    assert body["lanes"][0]["state"] == "ok"
    resumed = executor_metrics(stack)
    assert value(resumed, "akave_chain_lane_paused", key=ADDRESS) == 0
    assert value(resumed, "akave_chain_balance_wei", key=ADDRESS) > 0


async def test_the_standby_signs_within_15_s_of_the_holders_sigkill(
    stack: Stack, client: httpx.AsyncClient, chain: LocalAnvil
) -> None:
    before = chain.nonce(ADDRESS, "pending")
    stack.kill("executor")
    killed = time.monotonic()
    names = [unique_name("after-kill") for _ in range(5)]
    ids = await submit(client, names)
    while chain.nonce(ADDRESS, "pending") == before:
        took = time.monotonic() - killed
        assert took < TAKEOVER_LIMIT_S + 5, f"no transaction {took:.1f} s after the kill"
        await asyncio.sleep(0.1)
    took = time.monotonic() - killed
    print(f"takeover: the standby's first transaction {took:.2f} s after SIGKILL")
    assert took <= TAKEOVER_LIMIT_S
    await complete(stack, client, ids)
    assert "signer locks held" in log_text(stack, "executor:2")
    assert value(executor_metrics(stack, STANDBY_PORT), "akave_executor_standby") == 0
    transactions = our_transactions(chain)
    assert len({int(tx["nonce"], 16) for tx in transactions}) == len(transactions)
    assert all(int(tx["receipt"]["status"], 16) == 1 for tx in transactions)
    counts = creates_per_name(transactions)
    assert {name: counts[name] for name in names} == dict.fromkeys(names, 1)

    # the old holder is gone: its lane stays fresh, published by the new one
    lanes = (await client.get("/health")).json()["lanes"]
    assert [lane["state"] for lane in lanes] == ["ok"]


async def test_a_signer_that_loses_its_lock_signs_nothing_until_it_holds_it_again(
    stack: Stack, client: httpx.AsyncClient, chain: LocalAnvil
) -> None:
    before = chain.nonce(ADDRESS, "pending")
    url = libpq_url(stack.settings.database_url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as rival:
        cur = await rival.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'akave-executor-signer-fence' "
            "AND datname = current_database()"
        )
        assert await cur.fetchall(), "no fence session to end"
        # another signer takes the key the moment the holder's session is gone
        await rival.execute("SELECT pg_advisory_lock(%s)", (lock_key(chain.chain_id, ADDRESS),))
        ids = await submit(client, [unique_name("fenced")])
        wait_for_log(stack, "executor:2", "signer fence lost")
        await asyncio.sleep(4)  # two blocks: anything it had signed would be pending or mined
        assert chain.nonce(ADDRESS, "pending") == before
        stack.assert_alive()  # it did not exit: it started again in its process, a standby

        deadline = time.monotonic() + 20
        while True:  # its metrics come back with the restart and say what it is now
            try:
                if value(executor_metrics(stack, STANDBY_PORT), "akave_executor_standby") == 1:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, stack.logs("executor:2")
            await asyncio.sleep(0.5)
        # nobody publishes the lane now: /health calls it stale (CHAIN_LANE_STATUS_STALE_S = 5)
        while (body := (await client.get("/health")).json())["lanes"][0]["state"] != "stale":
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
        assert body["status"].startswith("degraded: ") and "stale" in body["status"]
        assert chain.nonce(ADDRESS, "pending") == before

    # the rival let go (its session ended): the same process takes the key and finishes the job
    await complete(stack, client, ids)
    assert value(executor_metrics(stack, STANDBY_PORT), "akave_executor_standby") == 0
    stack.assert_alive()
