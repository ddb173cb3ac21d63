"""The transaction manager's metrics on a real anvil chain: each test makes one thing happen
(sends, a forced replacement, a dropped transaction, reverts, a pause for lack of funds), then
scrapes the executor's chain metrics (`ChainMetrics` and `LaneGauges` in a real registry,
served over HTTP as the executor serves it) and compares them with what the chain and the
journal show happened. Exact counts wherever the test decides how many there are.

Signing keys are anvil's public dev keys (localinfra/dev_keys.py), public test data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.executor.chain.keys import SigningKey
from services.executor.chain.lane import LaneConfig
from services.executor.chain.manager import TransactionManager
from services.executor.chain.records import Created, Refused, Reverted
from services.executor.chain.rpc import JsonRpc
from services.executor.chain_metrics import ChainMetrics, LaneGauges
from shared import error_codes, metrics
from tests.chain.fixtures import AnvilFactory
from tests.chain.test_transaction_manager import ADDRESS, KEY, Recorder, chain_with_storage
from tests.observability.scrape import Samples, gateway_series, scrape, value
from tests.support.stack import free_port

CHAIN_SERIES = frozenset(
    s for m in metrics.ALL if m.name.startswith("akave_chain_") for s in m.series()
)


class Watched:
    """Managers on one chain whose lanes report to one registry, served at `url`."""

    def __init__(self, anvil_factory: AnvilFactory) -> None:
        self.chain, self.contract = chain_with_storage(anvil_factory)
        self.journal = Recorder()
        self.registry = CollectorRegistry()
        self.observer = ChainMetrics(self.registry)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self._stop_serving = metrics.serve(self.registry, "127.0.0.1", port, "executor")
        self._managers: list[TransactionManager] = []
        self._rpcs: list[JsonRpc] = []

    async def manager(self, **options: Any) -> TransactionManager:
        config = LaneConfig(
            chain_id=self.chain.chain_id,
            contract=self.contract,
            **{"backoff_s": 0.1, "backoff_max_s": 0.5, **options},
        )
        rpc = JsonRpc(self.chain.rpc_url, timeout_s=2.0)
        self._rpcs.append(rpc)
        manager = TransactionManager(
            rpc, [SigningKey(KEY)], config, poll_interval_s=0.05, observer=self.observer
        )
        if not self._managers:  # one lane's state on the gauges: the first manager's
            self.registry.register(LaneGauges(manager.status))
        await manager.start()
        self._managers.append(manager)
        return manager

    def samples(self) -> Samples:
        return scrape(self.url)

    def receipts(self, tx_hashes: list[str]) -> list[dict[str, Any]]:
        return [self.chain.rpc("eth_getTransactionReceipt", h) for h in tx_hashes]

    async def close(self) -> None:
        for manager in self._managers:
            await manager.close()
        for rpc in self._rpcs:
            await rpc.close()
        self._stop_serving()


@pytest.fixture
async def watched(anvil_factory: AnvilFactory) -> AsyncIterator[Watched]:
    w = Watched(anvil_factory)
    try:
        yield w
    finally:
        await w.close()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def keys_in(samples: Samples) -> set[str]:
    """Every `key` label value on a chain series."""
    return {
        v
        for (name, labels), _ in samples.items()
        if name in CHAIN_SERIES
        for k, v in labels
        if k == "key"
    }


def gas_paid(receipts: list[dict[str, Any]]) -> float:
    return float(sum(int(r["effectiveGasPrice"], 16) for r in receipts))


async def test_sends_and_receipts_are_counted_and_the_gauges_show_the_lane(
    watched: Watched,
) -> None:
    manager = await watched.manager()
    chain = watched.chain
    chain.set_automine(False)  # nothing mines until the in-flight gauge has been read
    names = [f"sent-{i}" for i in range(5)]
    task = asyncio.gather(*(manager.create(n, watched.journal) for n in names))
    await until(lambda: len(watched.journal.attempts) == 5)
    hashes = [a.tx_hash for a in watched.journal.attempts]
    await until(lambda: all(chain.rpc("eth_getTransactionByHash", h) for h in hashes))
    held = watched.samples()
    assert value(held, "akave_chain_in_flight", key=ADDRESS) == 5
    assert value(held, "akave_chain_next_nonce", key=ADDRESS) == chain.nonce(ADDRESS) + 5
    assert value(held, "akave_chain_gas_price_paid_wei_count") == 0
    chain.mine(1)
    outcomes = await asyncio.wait_for(task, 20)
    assert all(isinstance(o, Created) for o in outcomes)

    samples = watched.samples()
    assert gateway_series(samples) <= metrics.exported_series()
    assert keys_in(samples) == {ADDRESS}  # the checksummed address, one lane
    assert value(samples, "akave_chain_in_flight", key=ADDRESS) == 0
    assert value(samples, "akave_chain_next_nonce", key=ADDRESS) == chain.nonce(ADDRESS)
    assert value(samples, "akave_chain_balance_wei", key=ADDRESS) == float(chain.balance(ADDRESS))
    assert value(samples, "akave_chain_lane_paused", key=ADDRESS) == 0
    assert value(samples, "akave_chain_gas_price_paid_wei_count") == 5
    assert value(samples, "akave_chain_gas_price_paid_wei_sum") == gas_paid(
        watched.receipts(hashes)
    )
    assert value(samples, "akave_chain_receipt_seconds_count") == 5
    for counter in ("replacements", "resends"):
        assert value(samples, f"akave_chain_{counter}_total", key=ADDRESS) == 0, counter
    assert not [n for n, _ in samples if n == "akave_chain_reverts_total"]


async def test_a_forced_replacement_is_counted_once_per_new_attempt(watched: Watched) -> None:
    manager = await watched.manager(replace_after_blocks=0)
    chain = watched.chain
    chain.set_automine(False)
    task = asyncio.create_task(manager.create("stuck", watched.journal))
    await until(lambda: len(watched.journal.attempts) == 1)
    original = watched.journal.attempts[0]
    await until(lambda: chain.rpc("eth_getTransactionByHash", original.tx_hash))
    chain.set_next_block_base_fee(3 * original.max_fee_per_gas)  # the original cannot pay
    chain.set_interval_mining(1)
    outcome = await asyncio.wait_for(task, 30)
    assert isinstance(outcome, Created) and outcome.tx_hash != original.tx_hash

    attempts = watched.journal.of("stuck")
    samples = watched.samples()
    assert value(samples, "akave_chain_replacements_total", key=ADDRESS) == len(attempts) - 1 >= 1
    assert value(samples, "akave_chain_resends_total", key=ADDRESS) == 0
    assert value(samples, "akave_chain_gas_price_paid_wei_count") == 1  # only the one mined
    assert value(samples, "akave_chain_gas_price_paid_wei_sum") == gas_paid(
        watched.receipts([outcome.tx_hash])
    )


async def test_a_dropped_transaction_sent_again_is_one_resend_and_its_receipt_time_spans_it(
    watched: Watched,
) -> None:
    manager = await watched.manager()
    chain = watched.chain
    chain.set_automine(False)
    started = time.monotonic()
    task = asyncio.create_task(manager.create("dropped", watched.journal))
    await until(lambda: len(watched.journal.attempts) == 1)
    (attempt,) = watched.journal.attempts
    await until(lambda: chain.rpc("eth_getTransactionByHash", attempt.tx_hash))
    broadcast_by = time.monotonic()  # the first broadcast happened before this
    await asyncio.sleep(0.5)
    chain.drop_transaction(attempt.tx_hash)
    assert chain.rpc("eth_getTransactionByHash", attempt.tx_hash) is None
    mining_from = time.monotonic()  # no receipt can exist before this
    chain.set_interval_mining(1)
    outcome = await asyncio.wait_for(task, 30)
    done = time.monotonic()
    assert isinstance(outcome, Created) and outcome.tx_hash == attempt.tx_hash
    assert watched.journal.attempts == [attempt]  # the same bytes, never re-signed

    samples = watched.samples()
    assert value(samples, "akave_chain_resends_total", key=ADDRESS) == 1
    assert value(samples, "akave_chain_replacements_total", key=ADDRESS) == 0
    assert value(samples, "akave_chain_receipt_seconds_count") == 1
    took = value(samples, "akave_chain_receipt_seconds_sum")
    assert mining_from - broadcast_by <= took <= done - started


async def test_reverts_are_counted_by_key_and_decoded_error_code(watched: Watched) -> None:
    starved = await watched.manager(create_gas=60_000)
    out_of_gas = await asyncio.wait_for(starved.create("starved", watched.journal), 20)
    assert isinstance(out_of_gas, Reverted) and out_of_gas.error == "out of gas"

    manager = await watched.manager()
    chain = watched.chain
    chain.set_automine(False)
    task = asyncio.gather(*(manager.create("twice", watched.journal) for _ in range(2)))
    await until(lambda: len(watched.journal.of("twice")) == 2)
    hashes = [a.tx_hash for a in watched.journal.of("twice")]
    await until(lambda: all(chain.rpc("eth_getTransactionByHash", h) for h in hashes))
    chain.mine(1)  # both in one block: the second reverts with BucketAlreadyExists
    outcomes = await asyncio.wait_for(task, 20)
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyExists", "Created"]

    samples = watched.samples()
    reverts = {
        dict(labels)["error_code"]: v
        for (name, labels), v in samples.items()
        if name == "akave_chain_reverts_total"
    }
    assert reverts == {error_codes.OUT_OF_GAS: 1, error_codes.BUCKET_ALREADY_ON_CHAIN: 1}
    assert keys_in(samples) == {ADDRESS}
    assert value(samples, "akave_chain_gas_price_paid_wei_count") == 3  # reverted ones paid too
    all_hashes = [out_of_gas.tx_hash, *hashes]
    assert value(samples, "akave_chain_gas_price_paid_wei_sum") == gas_paid(
        watched.receipts(all_hashes)
    )


async def test_a_lane_paused_for_zero_balance_shows_on_the_gauges_and_resumes(
    watched: Watched,
) -> None:
    chain = watched.chain
    chain.set_automine(False)
    chain.set_interval_mining(1)
    funds = chain.balance(ADDRESS)
    chain.set_balance(ADDRESS, 0)
    manager = await watched.manager(insufficient_funds_wait_s=2.0)
    refused = await asyncio.wait_for(manager.create("refused", watched.journal), 20)
    assert isinstance(refused, Refused) and refused.code == error_codes.INSUFFICIENT_FUNDS
    paused = watched.samples()
    assert value(paused, "akave_chain_lane_paused", key=ADDRESS) == 1
    assert value(paused, "akave_chain_balance_wei", key=ADDRESS) == 0
    assert value(paused, "akave_chain_in_flight", key=ADDRESS) == 0  # the refused one is gone

    task = asyncio.create_task(manager.create("patient", watched.journal))
    await asyncio.sleep(0.5)
    assert not task.done()
    assert value(watched.samples(), "akave_chain_lane_paused", key=ADDRESS) == 1
    chain.set_balance(ADDRESS, funds)
    outcome = await asyncio.wait_for(task, 30)
    assert isinstance(outcome, Created)
    refused_nonce = watched.journal.of("refused")[0].nonce
    await until(lambda: chain.nonce(ADDRESS) == refused_nonce + 2)  # the gap filled
    await until(lambda: value(watched.samples(), "akave_chain_in_flight", key=ADDRESS) == 0)
    # no transaction of ours is left: the balance read with their receipts is the final one

    samples = watched.samples()
    assert value(samples, "akave_chain_lane_paused", key=ADDRESS) == 0
    assert value(samples, "akave_chain_balance_wei", key=ADDRESS) == float(chain.balance(ADDRESS))
    assert value(samples, "akave_chain_next_nonce", key=ADDRESS) == chain.nonce(ADDRESS)
    # mined: the patient create and the self-transfer that filled the refused one's nonce
    assert value(samples, "akave_chain_gas_price_paid_wei_count") == 2
    assert not [n for n, _ in samples if n == "akave_chain_reverts_total"]
