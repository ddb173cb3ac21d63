"""The transaction manager on a real anvil chain with Akave-compatible Storage deployed.

Each test takes a chain of its own (automine for speed, 1-2 s blocks where timing matters),
deploys the Storage contract, and drives `TransactionManager` through one fault lever. The
witness is always the chain itself: CreateBucket logs per name, nonces, receipts.
Signing keys here are anvil's public dev keys (localinfra/dev_keys.py), public test data.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from localinfra.anvil import LocalAnvil
from localinfra.anvil import RpcError as AnvilRpcError
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.chain import reverts
from services.executor.chain.keys import SigningKey
from services.executor.chain.lane import LaneConfig
from services.executor.chain.manager import TransactionManager
from services.executor.chain.records import (
    AlreadyExists,
    Attempt,
    Created,
    Outcome,
    Refused,
    Reverted,
)
from services.executor.chain.rpc import JsonRpc
from services.executor.chain.send_errors import SendVerdict, classify
from tests.chain.fixtures import AnvilFactory
from tests.support.stack import free_port
from tests.support.tcp_proxy import TcpProxy

KEY = DEV_ACCOUNTS[1][1]
ADDRESS = DEV_ACCOUNTS[1][0]
GWEI = 10**9


def chain_with_storage(
    anvil_factory: AnvilFactory, block_time: float | None = None
) -> tuple[LocalAnvil, str]:
    """A chain of the test's own with our Storage contract on it."""
    chain = anvil_factory(block_time=block_time)
    return chain, deploy_storage(chain)


class Recorder:
    """The journal: what the job flow would append to the log, in order."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.fail_next = False

    async def __call__(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    async def record_then_crash(self, attempt: Attempt) -> None:
        """Records the attempt and never returns: the process dies before its broadcast."""
        self.attempts.append(attempt)
        await asyncio.Event().wait()

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
                "topics": [reverts.CREATE_BUCKET_TOPIC],
            },
        )
        return Counter(entry["topics"][1] for entry in logs)


def bucket_id(name: str, owner: str = ADDRESS) -> str:
    return "0x" + keccak(name.encode() + bytes.fromhex(owner[2:])).hex()


@pytest.fixture
async def harness(anvil_factory: AnvilFactory) -> AsyncIterator[Harness]:
    h = Harness(*chain_with_storage(anvil_factory))
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


async def create_all(
    manager: TransactionManager, names: list[str], journal: Recorder
) -> dict[str, Outcome]:
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


async def test_a_transaction_dropped_from_the_mempool_is_sent_again_with_the_same_bytes(
    harness: Harness,
) -> None:
    manager = await harness.manager()
    harness.chain.set_automine(False)
    task = asyncio.create_task(manager.create("dropped", harness.journal))
    await wait_until(lambda: len(harness.journal.attempts) == 1)
    (attempt,) = harness.journal.attempts
    await wait_until(lambda: harness.chain.rpc("eth_getTransactionByHash", attempt.tx_hash))
    harness.chain.drop_transaction(attempt.tx_hash)
    assert harness.chain.rpc("eth_getTransactionByHash", attempt.tx_hash) is None
    harness.chain.set_interval_mining(1)
    outcome = await asyncio.wait_for(task, 30)
    assert isinstance(outcome, Created) and outcome.tx_hash == attempt.tx_hash
    assert harness.journal.attempts == [attempt]  # re-sent, never re-signed
    assert_created_once(harness, {"dropped": outcome})


async def test_a_stuck_transaction_is_replaced_with_bumped_fees_and_only_the_replacement_mines(
    harness: Harness,
) -> None:
    manager = await harness.manager(replace_after_blocks=0)
    harness.chain.set_automine(False)
    task = asyncio.create_task(manager.create("stuck", harness.journal))
    await wait_until(lambda: len(harness.journal.attempts) == 1)
    original = harness.journal.attempts[0]
    await wait_until(lambda: harness.chain.rpc("eth_getTransactionByHash", original.tx_hash))
    harness.chain.set_next_block_base_fee(3 * original.max_fee_per_gas)
    harness.chain.set_interval_mining(1)
    outcome = await asyncio.wait_for(task, 30)
    attempts = harness.journal.of("stuck")
    assert len(attempts) >= 2
    assert {a.nonce for a in attempts} == {original.nonce}
    for before, after in itertools.pairwise(attempts):
        assert after.max_fee_per_gas >= before.max_fee_per_gas * 1.125
        assert after.max_priority_fee_per_gas >= before.max_priority_fee_per_gas * 1.125
    assert isinstance(outcome, Created) and outcome.tx_hash != original.tx_hash
    assert harness.chain.rpc("eth_getTransactionReceipt", original.tx_hash) is None
    assert_created_once(harness, {"stuck": outcome})


async def test_a_transaction_sent_with_our_key_behind_our_back_resyncs_the_lane(
    harness: Harness,
) -> None:
    manager = await harness.manager()
    chain = harness.chain
    chain.set_automine(False)
    task = asyncio.create_task(manager.create("usurped", harness.journal))
    await wait_until(lambda: len(harness.journal.attempts) == 1)
    ours = harness.journal.attempts[0]
    await wait_until(lambda: chain.rpc("eth_getTransactionByHash", ours.tx_hash))
    # Someone else signs with our key: a richer transaction at our nonce, and one after it.
    chain.rpc("eth_sendRawTransaction", self_transfer(chain, ours.nonce, 10 * ours.max_fee_per_gas))
    chain.rpc("eth_sendRawTransaction", self_transfer(chain, ours.nonce + 1, ours.max_fee_per_gas))
    chain.set_interval_mining(1)
    outcome = await asyncio.wait_for(task, 30)
    assert chain.rpc("eth_getTransactionReceipt", ours.tx_hash) is None
    attempts = harness.journal.of("usurped")
    assert attempts[-1].nonce >= ours.nonce + 2  # signed again, past both of theirs
    assert isinstance(outcome, Created) and outcome.tx_hash == attempts[-1].tx_hash
    later = await asyncio.wait_for(create_all(manager, ["after-1", "after-2"], harness.journal), 30)
    assert_created_once(harness, {"usurped": outcome, **later})


async def test_an_unfunded_key_pauses_its_lane_and_resumes_once_funded(harness: Harness) -> None:
    chain = harness.chain
    chain.set_automine(False)
    chain.set_interval_mining(1)
    funds = chain.balance(ADDRESS)
    chain.set_balance(ADDRESS, 0)
    manager = await harness.manager(insufficient_funds_wait_s=3.0)
    refused = await asyncio.wait_for(manager.create("refused", harness.journal), 20)
    assert isinstance(refused, Refused) and refused.code == "insufficient_funds"
    (lane,) = manager.status()
    assert lane.paused and lane.balance_wei == 0

    task = asyncio.create_task(manager.create("patient", harness.journal))
    await asyncio.sleep(0.5)
    assert not task.done() and manager.status()[0].paused
    chain.set_balance(ADDRESS, funds)
    outcome = await asyncio.wait_for(task, 30)
    assert not manager.status()[0].paused
    assert_created_once(harness, {"patient": outcome})
    # The refused create's nonce was left unused: a self-transfer filled the gap.
    refused_nonce = harness.journal.of("refused")[0].nonce
    assert harness.journal.of("patient")[0].nonce == refused_nonce + 1
    await wait_until(lambda: chain.nonce(ADDRESS) == refused_nonce + 2)


async def test_funds_that_arrive_between_blocks_are_seen_before_a_waiting_create_is_refused(
    harness: Harness,
) -> None:
    chain = harness.chain
    chain.set_automine(False)
    chain.set_interval_mining(1)
    funds = chain.balance(ADDRESS)
    chain.set_balance(ADDRESS, 0)
    manager = await harness.manager(insufficient_funds_wait_s=2.0)
    refused = await asyncio.wait_for(manager.create("refused-first", harness.journal), 20)
    assert isinstance(refused, Refused) and manager.status()[0].paused
    chain.set_interval_mining(0)  # no block comes to tell the paused lane about the funds
    chain.set_balance(ADDRESS, funds)
    task = asyncio.create_task(manager.create("funded-meanwhile", harness.journal))
    await wait_until(lambda: len(harness.journal.of("funded-meanwhile")) == 1, timeout=10)
    assert not manager.status()[0].paused  # its wait ended, the balance read then covers it
    chain.set_interval_mining(1)
    outcome = await asyncio.wait_for(task, 30)
    assert_created_once(harness, {"funded-meanwhile": outcome})


async def test_on_an_automining_chain_a_paused_lane_resumes_once_funded_without_a_block(
    harness: Harness,
) -> None:
    chain = harness.chain  # automining: no block comes while the lane sends nothing
    funds = chain.balance(ADDRESS)
    chain.set_balance(ADDRESS, 0)
    manager = await harness.manager(insufficient_funds_wait_s=30.0, funds_poll_s=0.2)
    task = asyncio.create_task(manager.create("waits-for-funds", harness.journal))
    await wait_until(lambda: manager.status()[0].paused)
    block = chain.block_number()
    chain.set_balance(ADDRESS, funds)
    outcome = await asyncio.wait_for(task, 15)
    assert_created_once(harness, {"waits-for-funds": outcome})
    assert len(harness.journal.of("waits-for-funds")) == 1  # the same bytes, sent again
    assert chain.block_number() == block + 1  # mined by its own send, no other block
    assert not manager.status()[0].paused


async def test_an_unfunded_create_on_an_idle_chain_is_refused_after_its_wait(
    harness: Harness,
) -> None:
    chain = harness.chain  # automining, and nothing else is sent: no block at all
    chain.set_balance(ADDRESS, 0)
    manager = await harness.manager(insufficient_funds_wait_s=1.0, funds_poll_s=0.2)
    refused = await asyncio.wait_for(manager.create("never-funded", harness.journal), 15)
    assert isinstance(refused, Refused) and refused.code == "insufficient_funds"
    assert manager.status()[0].paused


async def test_an_rpc_outage_fails_nothing_and_signs_nothing_again(
    anvil_factory: AnvilFactory,
) -> None:
    chain, contract = chain_with_storage(anvil_factory, block_time=1.0)
    proxy = TcpProxy("127.0.0.1", chain.port, free_port())
    proxy.start()
    h = Harness(chain, contract, rpc_url=f"http://127.0.0.1:{proxy.port}")
    try:
        manager = await h.manager()
        first = await asyncio.wait_for(manager.create("before", h.journal), 20)
        proxy.cut()
        names = [f"during-{i}" for i in range(5)]
        task = asyncio.create_task(create_all(manager, names, h.journal))
        await asyncio.sleep(5.0)
        assert not task.done()
        proxy.restore()
        outcomes = await asyncio.wait_for(task, 30)
        for name in names:
            assert len(h.journal.of(name)) == 1  # signed once, sent when the node came back
        assert_created_once(h, {"before": first, **outcomes})
    finally:
        await h.close()
        proxy.stop()


async def test_a_reorg_of_mined_transactions_puts_them_back_and_each_completes_once(
    harness: Harness,
) -> None:
    chain = harness.chain
    manager = await harness.manager(confirmations=3)
    chain.mine(3)  # so that a reorg of depth 2 leaves the contract's own block alone
    chain.set_automine(False)
    names = [f"reorged-{i}" for i in range(3)]
    task = asyncio.create_task(create_all(manager, names, harness.journal))
    await wait_until(lambda: len(harness.journal.attempts) == 3)
    hashes = [a.tx_hash for a in harness.journal.attempts]
    await wait_until(lambda: all(chain.rpc("eth_getTransactionByHash", h) for h in hashes))
    chain.mine(1)
    assert all(chain.rpc("eth_getTransactionReceipt", h) for h in hashes)
    await asyncio.sleep(0.5)  # the watcher sees them mined, not yet confirmed
    chain.reorg(2)
    assert not any(chain.rpc("eth_getTransactionReceipt", h) for h in hashes)
    await wait_until(lambda: all(chain.rpc("eth_getTransactionByHash", h) for h in hashes))
    chain.set_interval_mining(1)
    outcomes = await asyncio.wait_for(task, 30)
    assert len(harness.journal.attempts) == 3  # the same bytes came back, nothing re-signed
    assert_created_once(harness, outcomes)


async def test_a_new_manager_resolves_recorded_attempts_without_signing_new_creates(
    harness: Harness,
) -> None:
    chain = harness.chain
    chain.set_automine(False)
    crashed = await harness.manager()
    names = [f"resumed-{i}" for i in range(6)]
    first = asyncio.create_task(crashed.create(names[0], harness.journal.record_then_crash))
    await wait_until(lambda: len(harness.journal.attempts) == 1)
    rest = [asyncio.create_task(crashed.create(n, harness.journal)) for n in names[1:]]
    await wait_until(lambda: len(harness.journal.attempts) == 6)
    sent = harness.journal.of(names[1])[0].tx_hash
    await wait_until(lambda: chain.rpc("eth_getTransactionByHash", sent))
    chain.drop_transaction(harness.journal.of(names[2])[0].tx_hash)  # lost with the mempool
    for task in [first, *rest]:
        task.cancel()
    await crashed.close()
    chain.mine(1)  # what the node had (behind the gap at names[0]'s nonce: nothing yet)

    recorded = {name: harness.journal.of(name) for name in names}
    restarted = await harness.manager()
    chain.set_interval_mining(1)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(restarted.resume(recorded[n], harness.journal) for n in names)), 30
    )
    for name, outcome in zip(names, outcomes, strict=True):
        assert {a.nonce for a in harness.journal.of(name)} == {recorded[name][0].nonce}
        assert isinstance(outcome, Created)
    assert_created_once(harness, dict(zip(names, outcomes, strict=True)))


async def test_a_create_of_a_key_that_left_the_pool_is_followed_watch_only_to_its_outcome(
    harness: Harness,
) -> None:
    chain = harness.chain
    chain.set_automine(False)
    before = await harness.manager()
    task = asyncio.create_task(before.create("retiring", harness.journal))
    (recorded,) = await wait_for_attempts(harness, "retiring", 1)
    await wait_until(lambda: chain.rpc("eth_getTransactionByHash", recorded.tx_hash))
    task.cancel()
    await before.close()
    chain.drop_transaction(recorded.tx_hash)  # gone with the node's mempool, too

    after = await harness.manager(keys=[DEV_ACCOUNTS[2][1]])  # the pool no longer holds KEY
    outcome = after.follow([recorded], harness.journal)
    (retired,) = [lane for lane in after.status() if lane.address == ADDRESS]
    assert retired.in_flight == 1
    chain.set_interval_mining(1)
    result = await asyncio.wait_for(outcome, 30)
    assert harness.journal.of("retiring") == [recorded]  # nothing signed: its bytes sent again
    assert_created_once(harness, {"retiring": result})
    assert [lane.address for lane in after.status()] == [DEV_ACCOUNTS[2][0]]


async def test_a_retired_keys_create_whose_nonce_was_used_elsewhere_fails_as_signer_retired(
    harness: Harness,
) -> None:
    chain = harness.chain
    chain.set_automine(False)
    before = await harness.manager()
    task = asyncio.create_task(before.create("orphaned", harness.journal.record_then_crash))
    (recorded,) = await wait_for_attempts(harness, "orphaned", 1)
    task.cancel()
    await before.close()
    usurper = self_transfer(chain, recorded.nonce, 4 * recorded.max_fee_per_gas)
    chain.rpc("eth_sendRawTransaction", usurper)  # the key, used elsewhere, takes the nonce

    after = await harness.manager(keys=[DEV_ACCOUNTS[2][1]])
    outcome = after.follow([recorded], harness.journal)
    chain.set_interval_mining(1)
    result = await asyncio.wait_for(outcome, 30)
    assert isinstance(result, Refused) and result.code == "signer_retired", result
    assert harness.journal.of("orphaned") == [recorded]
    assert harness.create_logs() == Counter()


async def wait_for_attempts(harness: Harness, name: str, count: int) -> list[Attempt]:
    await wait_until(lambda: len(harness.journal.of(name)) >= count)
    return harness.journal.of(name)


def self_transfer(chain: LocalAnvil, nonce: int, fee_cap: int) -> str:
    """A transaction signed with the manager's key outside the manager (a dev key: public)."""
    tx = {
        "type": 2,
        "chainId": chain.chain_id,
        "nonce": nonce,
        "to": ADDRESS,
        "value": 0,
        "gas": 21_000,
        "maxFeePerGas": fee_cap,
        "maxPriorityFeePerGas": fee_cap // 2,
    }
    return "0x" + Account.sign_transaction(tx, KEY).raw_transaction.hex()


async def test_a_create_that_runs_out_of_gas_fails_with_the_reason(harness: Harness) -> None:
    manager = await harness.manager(create_gas=60_000)
    outcome = await asyncio.wait_for(manager.create("starved", harness.journal), 20)
    assert isinstance(outcome, Reverted) and outcome.error == "out of gas"
    assert harness.create_logs() == Counter()


def test_the_nodes_refusals_are_read_as_the_manager_needs(harness: Harness) -> None:
    """The words anvil uses, produced live: what a send error means for the attempt."""
    chain = harness.chain
    chain.set_automine(False)
    nonce = chain.nonce(ADDRESS)
    base_fee = int(chain.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    pending = self_transfer(chain, nonce, 4 * base_fee)
    chain.rpc("eth_sendRawTransaction", pending)

    def refusal(raw: str) -> SendVerdict:
        with pytest.raises(AnvilRpcError) as refused:
            chain.rpc("eth_sendRawTransaction", raw)
        return classify(refused.value.message)

    assert refusal(pending) is SendVerdict.MAYBE_SENT  # already known
    cheaper = self_transfer(chain, nonce, 2 * base_fee)  # replacement underpriced
    assert refusal(cheaper) is SendVerdict.MAYBE_SENT
    assert refusal(self_transfer(chain, nonce + 1, base_fee // 2)) is SendVerdict.UNDERPRICED
    chain.mine(1)
    assert refusal(self_transfer(chain, nonce, 8 * base_fee)) is SendVerdict.MAYBE_SENT  # too low
    chain.set_balance(ADDRESS, 0)
    assert refusal(self_transfer(chain, nonce + 1, 4 * base_fee)) is SendVerdict.INSUFFICIENT_FUNDS


async def test_an_attempt_the_journal_refused_is_never_sent_and_the_next_create_takes_its_nonce(
    harness: Harness,
) -> None:
    manager = await harness.manager()
    start = harness.chain.nonce(ADDRESS)
    refused: list[Attempt] = []

    async def log_down(attempt: Attempt) -> None:
        refused.append(attempt)
        raise OSError("the log did not take the record")

    with pytest.raises(OSError):
        await manager.create("unrecorded", log_down)
    assert harness.chain.rpc("eth_getTransactionByHash", refused[0].tx_hash) is None
    outcome = await asyncio.wait_for(manager.create("recorded", harness.journal), 20)
    assert isinstance(outcome, Created)
    assert harness.journal.of("recorded")[0].nonce == refused[0].nonce == start
    assert harness.chain.nonce(ADDRESS) == start + 1  # the nonce reused: no gap to fill
    assert harness.create_logs() == Counter({bucket_id("recorded"): 1})


class SlowAppend:
    """A journal whose append lands in the log at once but is acknowledged only when the test
    says so: what a rebalance finds when it cancels a job in the middle of an append."""

    def __init__(self, journal: Recorder) -> None:
        self.journal = journal
        self.acknowledge = asyncio.Event()

    async def __call__(self, attempt: Attempt) -> None:
        self.journal.attempts.append(attempt)  # in the log from here on
        await self.acknowledge.wait()


async def test_a_create_cancelled_while_its_record_is_appended_keeps_its_nonce_and_one_outcome(
    harness: Harness,
) -> None:
    manager = await harness.manager()
    harness.chain.set_interval_mining(1)  # blocks keep coming, as on a real chain
    start = harness.chain.nonce(ADDRESS)
    append = SlowAppend(harness.journal)
    cancelled = asyncio.create_task(manager.create("rebalanced", append, "job-1"))
    await wait_until(lambda: len(harness.journal.of("rebalanced")) == 1)
    cancelled.cancel()  # the job's partition was revoked mid-append
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    recorded = harness.journal.of("rebalanced")

    other = asyncio.create_task(manager.create("other", harness.journal))
    await wait_until(lambda: len(harness.journal.of("other")) == 1)
    assert harness.journal.of("other")[0].nonce == start + 1  # the recorded nonce stays held
    rerun = asyncio.create_task(manager.create("rebalanced", harness.journal, "job-1"))  # again
    await asyncio.sleep(0.3)
    assert harness.journal.of("rebalanced") == recorded  # it signs nothing new

    append.acknowledge.set()
    outcome = await asyncio.wait_for(rerun, 20)
    assert isinstance(outcome, Created) and outcome.tx_hash == recorded[0].tx_hash
    assert isinstance(await asyncio.wait_for(other, 20), Created)
    followed = await asyncio.wait_for(manager.resume(recorded, harness.journal), 20)
    assert isinstance(followed, Created) and followed.tx_hash == recorded[0].tx_hash
    assert harness.chain.nonce(ADDRESS) == start + 2
    assert harness.create_logs() == Counter({bucket_id("rebalanced"): 1, bucket_id("other"): 1})


async def test_a_record_followed_from_the_log_before_its_append_returned_is_followed_once(
    harness: Harness,
) -> None:
    manager = await harness.manager()
    harness.chain.set_interval_mining(1)  # blocks keep coming, as on a real chain
    append = SlowAppend(harness.journal)
    cancelled = asyncio.create_task(manager.create("handed-back", append, "job-2"))
    await wait_until(lambda: len(harness.journal.of("handed-back")) == 1)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    recorded = harness.journal.of("handed-back")
    followed = manager.follow(recorded, harness.journal)  # the partition came back: the
    append.acknowledge.set()  # ledger saw the record before the broker acknowledged it
    outcome = await asyncio.wait_for(followed, 20)
    assert isinstance(outcome, Created) and outcome.tx_hash == recorded[0].tx_hash
    assert harness.journal.of("handed-back") == recorded
    assert harness.create_logs() == Counter({bucket_id("handed-back"): 1})
