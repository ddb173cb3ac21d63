"""One signing key's lane: its nonces, its transactions in flight, and what each new block
means for them.

Rules (notes/evm-chain.md, "What the best transaction managers agree on"):
- Nonces come from one allocator per key: max(local next, the chain's pending count). A nonce
  is reserved from allocation until its transaction is tracked, so a nonce still being
  recorded is never mistaken for a gap.
- Every new attempt is awaited by the caller's `Journal` before it is broadcast.
- A refused send that is not a clear "cannot pay" or "too cheap" is *maybe sent*: the next
  block's receipts and nonce decide, nothing is signed again for it.
- Once a transaction is signed it is followed to its outcome: re-broadcast with the same bytes
  while it is missing from the mempool or the node is unreachable, replaced at the same nonce
  with bumped fees while it is not mined, put back in flight if a reorg removes it.
- The only create signed again at a new nonce is one whose nonce the chain has used for a
  transaction that is none of its attempts (seen on two blocks): then none of them can ever be
  mined. A real gap below our lowest transaction in flight is filled with a 0-value
  self-transfer.
- "Insufficient funds" pauses the lane: nothing new is signed, unsent transactions wait, and
  the lane resumes as soon as the balance covers them: judged on each new block and every
  `funds_poll_s` in between (a chain may make no block meanwhile), and by a waiting create
  before its refusal. Creates that were never accepted by the node fail with
  `insufficient_funds` only after `insufficient_funds_wait_s`.

- One signer per key across processes: `fence.verify()` comes right before each signing (a
  create, a replacement, a gap filler), with no await between it and the signature; a lane
  whose fence is lost waits there forever and signs nothing more (chain/fence.py).
- Replacements, re-broadcasts of accepted bytes, final transactions and reverts are reported
  to the lane's `LaneObserver` where they happen (chain/observer.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from services.executor.chain import fees as fee_rules
from services.executor.chain import reverts
from services.executor.chain.fence import UNFENCED, Fence
from services.executor.chain.keys import Signer
from services.executor.chain.observer import UNOBSERVED, LaneObserver
from services.executor.chain.records import (
    CREATE,
    FILL,
    AlreadyExists,
    Attempt,
    Created,
    Journal,
    Kind,
    LaneStatus,
    Outcome,
    Refused,
    Reverted,
)
from services.executor.chain.rpc import JsonRpc, Request, RpcError, RpcUnavailable
from services.executor.chain.send_errors import SendVerdict, classify
from services.executor.chain.slots import InFlightSlots
from shared import error_codes

log = logging.getLogger(__name__)

FILL_GAS = 21_000
CONSUMED_CHECKS = 2  # blocks on which a nonce must look used by another transaction


@dataclass(frozen=True)
class LaneConfig:
    chain_id: int
    contract: str  # checksummed Storage address
    max_in_flight: int = 16
    confirmations: int = 1
    replace_after_blocks: int = 3
    fee_bump: float = fee_rules.MIN_BUMP
    fee_cap_wei: int = 1_000 * 10**9
    insufficient_funds_wait_s: float = 600.0
    funds_poll_s: float = 1.0  # a paused lane reads its balance this often, blocks or not
    create_gas: int = 300_000
    backoff_s: float = 0.5
    backoff_max_s: float = 5.0


@dataclass
class Head:
    """The chain's latest block as the block watcher last read it (shared by all lanes)."""

    number: int = -1
    hash: str = ""
    base_fee: int | None = None
    tip: int = 10**9


@dataclass(eq=False)
class Create:
    """One caller's create, followed through every nonce it was signed at."""

    name: str
    journal: Journal
    future: asyncio.Future[Outcome]
    nonces: set[int] = field(default_factory=set)
    recording: asyncio.Task[None] | None = None  # its latest signed attempt's record and send


@dataclass(eq=False)
class InFlight:
    nonce: int
    create: Create | None  # None: a gap filler
    attempts: list[Attempt]  # in signing order; the last is the one to send
    sent: bool = False  # the last send reached the node (accepted or maybe sent)
    accepted: bool = False  # some send of it ever reached the node
    blocks_waiting: int = 0  # new heads seen since the last attempt was signed or re-sent
    underpriced: bool = False
    mined: tuple[Attempt, dict[str, Any]] | None = None
    consumed_checks: int = 0
    busy: bool = False  # an action of a block (send, replace, resolve) is still running
    unfunded_since: float | None = None  # first refused for lack of funds (monotonic clock)
    first_broadcast: float | None = None  # this process's first send of any attempt (monotonic)
    accepted_hashes: set[str] = field(default_factory=set)  # attempts some send got to the node
    receipt_at: float | None = None  # when the receipt of `mined` was first seen (monotonic)


@dataclass(frozen=True)
class _Snapshot:
    """What one block's batch asked about this lane, to read its answers back."""

    txs: list[InFlight]
    sent: set[int]  # id() of the transactions already sent when the questions were asked
    receipt_keys: list[tuple[InFlight, Attempt]]
    pool_keys: list[tuple[InFlight, Attempt]]


class Lane:
    def __init__(
        self,
        key: Signer,
        rpc: JsonRpc,
        head: Head,
        config: LaneConfig,
        fence: Fence = UNFENCED,
        observer: LaneObserver = UNOBSERVED,
    ) -> None:
        self.key = key
        self._fence = fence
        self._observer = observer
        self.address = key.address
        self._rpc = rpc
        self._head = head
        self._config = replace(config, contract=to_checksum_address(config.contract))
        self._slots = InFlightSlots(config.max_in_flight)
        self._allocation = asyncio.Lock()
        self._next: int | None = None
        self._reserved: set[int] = set()
        self._free: set[int] = set()  # allocated, never recorded: taken again before new ones
        self._txs: dict[int, InFlight] = {}
        self._creating: dict[Hashable, Create] = {}  # job -> its create not yet resolved
        self._funded = asyncio.Event()
        self._funded.set()
        self._paused_since: float | None = None
        self._pause_reason: str | None = None
        self._balance: int | None = None
        self._funds_watch: asyncio.Task[None] | None = None
        self._snapshot: _Snapshot | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- callers ---------------------------------------------------------------------------

    async def create(self, name: str, journal: Journal, job: Hashable | None = None) -> Outcome:
        """Sign, record, broadcast and follow a create of `name` to its outcome.

        The wait for a slot and for funds comes first; once signed, cancelling the caller
        does not abandon the transaction (its outcome is simply not awaited). `job` names the
        caller's job: a job's create still in flight from a cancelled run is its outcome."""
        refused = await self._wait_for_funds()
        if refused is not None:
            return refused
        await self._slots.acquire()
        ongoing = self._creating.get(job) if job is not None else None
        if ongoing is not None:
            # A run of this job cancelled after signing (a rebalance) left its transaction in
            # flight: this run waits for that outcome instead of signing the name again.
            self._slots.release()
            return await asyncio.shield(ongoing.future)
        create = Create(name, journal, asyncio.get_running_loop().create_future())
        create.future.add_done_callback(lambda _: self._slots.release())
        if job is not None:
            self._track_job(job, create)
        try:
            await self._sign_and_send(create)
        except BaseException:
            if create.recording is None and not create.future.done():
                create.future.cancel()  # nothing was signed: free the slot
            raise
        return await asyncio.shield(create.future)

    async def resume(self, attempts: Sequence[Attempt], journal: Journal) -> Outcome:
        """Follow a create's recorded attempts (any nonces) to their outcome, signing nothing
        new unless every nonce they used is taken by some other transaction."""
        return await asyncio.shield(self.follow(attempts, journal))

    def follow(self, attempts: Sequence[Attempt], journal: Journal) -> asyncio.Future[Outcome]:
        """`resume`'s first half, done before it returns: the attempts are tracked (their
        nonces held) when this returns; the future is their outcome.

        Call it for every recorded create before the lane signs new ones: the chain's pending
        count does not show attempts that were recorded but never reached a node."""
        create = Create(
            attempts[0].bucket_name, journal, asyncio.get_running_loop().create_future()
        )
        by_nonce: dict[int, list[Attempt]] = {}
        for attempt in attempts:
            by_nonce.setdefault(attempt.nonce, []).append(attempt)
        for nonce, group in sorted(by_nonce.items()):
            tx = self._txs.get(nonce)
            if tx is not None and tx.create is not None and tx.create.name == create.name:
                known = {a.tx_hash for a in tx.attempts}
                tx.attempts.extend(a for a in group if a.tx_hash not in known)
                if tx.create is not create and not tx.create.future.done():
                    tx.create.future.cancel()  # its caller is gone (a rebalance): free its slot
                tx.create = create
            elif tx is not None:
                raise RuntimeError(
                    f"nonce {nonce} of {self.address} is already used by a create of "
                    f"{tx.create.name if tx.create else 'a gap filler'}: resume recorded "
                    "attempts before the lane signs anything new"
                )
            else:
                self._txs[nonce] = InFlight(nonce, create, list(group))
            create.nonces.add(nonce)
            self._next = max(self._next or 0, nonce + 1)
        self._slots.take()
        create.future.add_done_callback(lambda _: self._slots.release())
        return create.future

    def _track_job(self, job: Hashable, create: Create) -> None:
        self._creating[job] = create

        def untrack(_: asyncio.Future[Outcome]) -> None:
            if self._creating.get(job) is create:
                del self._creating[job]

        create.future.add_done_callback(untrack)

    def status(self) -> LaneStatus:
        return LaneStatus(
            address=self.address,
            in_flight=len(self._txs),
            next_nonce=self._next,
            paused=self._paused_since is not None,
            balance_wei=self._balance,
            reason=self._pause_reason,
        )

    # -- signing and sending ---------------------------------------------------------------

    async def _wait_for_funds(self) -> Refused | None:
        """While the lane is paused: wait for funds, up to the wait for each caller. The
        balance is read once more before a refusal: funds that arrived since the last block
        the watcher judged (or without one) are not refused."""
        if self._paused_since is None:
            return None
        try:
            async with asyncio.timeout(self._config.insufficient_funds_wait_s):
                await self._funded.wait()
        except TimeoutError:
            if await self._judge_funds():
                return None
            return self._refusal()
        return None

    async def _judge_funds(self) -> bool:
        """Read the balance now and judge it as a new block would (`_after_pause_check`);
        True once the lane is not paused. Without the node the lane stays as it is."""
        try:
            balance = int(await self._rpc.call("eth_getBalance", self.address, "latest"), 16)
        except (RpcUnavailable, RpcError):
            return self._paused_since is None
        self._balance = balance
        if self._paused_since is not None:
            self._after_pause_check(balance)
        return self._paused_since is None

    def _funds_needed(self) -> int:
        """What a paused lane must hold to resume: its costliest unsent transaction, or with
        none, a create at twice the base fee."""
        unsent = [tx for tx in self._txs.values() if not tx.sent]
        return max(
            (a.gas * a.max_fee_per_gas for tx in unsent for a in tx.attempts[-1:]),
            default=self._config.create_gas * (self._head.base_fee or 0) * 2,
        )

    def _refusal(self) -> Refused:
        return Refused(
            error_codes.INSUFFICIENT_FUNDS,
            f"insufficient funds: key {self.address} has {self._balance} wei and stayed "
            f"unfunded for {self._config.insufficient_funds_wait_s:g} s",
        )

    async def _sign_and_send(self, create: Create) -> None:
        attempt = await self._allocate_and_sign(create.name)
        # Signed: recording and sending run in the lane's own task, so a caller cancelled from
        # here on (a rebalance) leaves them to finish. Its record may reach the log whatever
        # the caller does, so its nonce must not be freed for another create.
        recording = asyncio.create_task(self._record_and_send(create, attempt))
        create.recording = recording
        self._tasks.add(recording)
        recording.add_done_callback(self._recorded)
        await asyncio.shield(recording)

    async def _record_and_send(self, create: Create, attempt: Attempt) -> None:
        try:
            await create.journal(attempt)
        except BaseException:
            # Unrecorded, so never sent: the next create takes the nonce (or, if none comes
            # before the next block, a gap filler).
            self._free.add(attempt.nonce)
            if not create.nonces and not create.future.done():
                create.future.cancel()
            raise
        finally:
            self._reserved.discard(attempt.nonce)
        if attempt.nonce in self._txs:
            # Followed from the log while its record was being appended (a rebalance gave the
            # partition back): that tracker follows it; this create's caller is gone.
            if not create.nonces and not create.future.done():
                create.future.cancel()
            return
        tx = InFlight(attempt.nonce, create, [attempt])
        self._txs[attempt.nonce] = tx
        create.nonces.add(attempt.nonce)
        await self._send(tx, attempt)

    def _recorded(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Also raised to the caller if it still waits; retrieved here for when it does not.
            log.debug("recording a signed create failed", exc_info=task.exception())

    async def _allocate_and_sign(self, name: str) -> Attempt:
        async with self._allocation:
            pending = await self._pending_count(required=self._next is None)
            floor = pending or 0
            self._free = {n for n in self._free if n >= floor and n not in self._txs}
            if self._free:
                nonce = min(self._free)
                self._free.discard(nonce)
            else:
                nonce = max(self._next or 0, pending or 0)
                self._next = nonce + 1
            self._reserved.add(nonce)
        try:
            base_fee = await self._base_fee()
            offer = fee_rules.first_offer(base_fee, self._head.tip, self._config.fee_cap_wei)
            await self._fence.verify()
            return self._sign(nonce, name, offer)
        except BaseException:
            self._reserved.discard(nonce)
            raise

    async def _pending_count(self, required: bool) -> int | None:
        """The chain's pending nonce; without the node, None (or wait for it if `required`)."""
        delay = self._config.backoff_s
        while True:
            try:
                return int(
                    await self._rpc.call("eth_getTransactionCount", self.address, "pending"), 16
                )
            except RpcUnavailable:
                if not required:
                    return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._config.backoff_max_s)

    async def _base_fee(self) -> int:
        delay = self._config.backoff_s
        while self._head.base_fee is None:
            try:
                block = await self._rpc.call("eth_getBlockByNumber", "latest", False)
                self._head.base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
            except RpcUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.backoff_max_s)
        return self._head.base_fee

    def _sign(self, nonce: int, name: str, offer: fee_rules.Fees) -> Attempt:
        kind: Kind = CREATE if name else FILL
        if name:
            to, data, gas = self._config.contract, create_call(name), self._config.create_gas
        else:
            to, data, gas = self.address, "0x", FILL_GAS
        signed = self.key.sign(
            {
                "type": 2,
                "chainId": self._config.chain_id,
                "nonce": nonce,
                "to": to,
                "value": 0,
                "data": data,
                "gas": gas,
                "maxFeePerGas": offer.max_fee_per_gas,
                "maxPriorityFeePerGas": offer.max_priority_fee_per_gas,
            }
        )
        return Attempt(
            signer=self.address,
            chain_id=self._config.chain_id,
            nonce=nonce,
            tx_hash=signed.tx_hash,
            raw=signed.raw,
            max_fee_per_gas=offer.max_fee_per_gas,
            max_priority_fee_per_gas=offer.max_priority_fee_per_gas,
            gas=gas,
            bucket_name=name,
            kind=kind,
        )

    async def _send(self, tx: InFlight, attempt: Attempt) -> None:
        tx.blocks_waiting = 0
        if tx.first_broadcast is None:
            tx.first_broadcast = time.monotonic()
        if attempt.tx_hash in tx.accepted_hashes:
            self._observer.resent(self.address)
        try:
            await self._rpc.call("eth_sendRawTransaction", attempt.raw)
        except RpcUnavailable:
            tx.sent = False
            return
        except RpcError as exc:
            verdict = classify(exc.message)
            if verdict is SendVerdict.INSUFFICIENT_FUNDS:
                tx.sent = False
                if tx.unfunded_since is None:
                    tx.unfunded_since = time.monotonic()
                self._pause(exc.message)
                return
            if verdict is SendVerdict.UNDERPRICED:
                tx.sent = False
                tx.underpriced = True
                return
            log.info(
                "send refused, resolving from receipts and nonce",
                extra={"nonce": tx.nonce, "tx_hash": attempt.tx_hash, "error": exc.message},
            )
        tx.sent = tx.accepted = True
        tx.accepted_hashes.add(attempt.tx_hash)
        tx.underpriced = False
        tx.unfunded_since = None

    def _pause(self, reason: str) -> None:
        if self._paused_since is None:
            log.warning("lane paused: the key cannot pay", extra={"address": self.address})
            self._paused_since = time.monotonic()
            self._pause_reason = reason
            self._funded.clear()
            if self._funds_watch is None or self._funds_watch.done():
                self._funds_watch = asyncio.create_task(self._watch_funds())
                self._tasks.add(self._funds_watch)
                self._funds_watch.add_done_callback(self._tasks.discard)

    def _unpause(self) -> None:
        log.info("lane resumed: the key is funded", extra={"address": self.address})
        self._paused_since = None
        self._pause_reason = None
        self._funded.set()

    async def _watch_funds(self) -> None:
        """While paused, judge the balance every `funds_poll_s` as a new block would: a chain
        that makes no block meanwhile (automining, idle) neither keeps the lane paused once
        funded nor keeps an unsent create waiting past its wait. On resuming, what waits
        unsent is sent at once, not on the next block."""
        while self._paused_since is not None:
            await asyncio.sleep(self._config.funds_poll_s)
            await self._judge_funds()
        for tx in sorted(self._txs.values(), key=lambda tx: tx.nonce):
            if not tx.sent and not tx.underpriced and not tx.busy and tx.mined is None:
                self._start(tx, self._send(tx, tx.attempts[-1]))

    # -- the block watcher's questions and answers ----------------------------------------

    def queries(self) -> list[Request]:
        """This lane's part of one block's batch: nonces, balance, receipts, mempool presence.
        The nonces come first, so a receipt read after them is never older than they are."""
        txs = sorted(self._txs.values(), key=lambda tx: tx.nonce)
        receipt_keys = [(tx, attempt) for tx in txs for attempt in tx.attempts]
        pool_keys = [(tx, a) for tx in txs if tx.sent and tx.mined is None for a in tx.attempts]
        sent = {id(tx) for tx in txs if tx.sent}
        self._snapshot = _Snapshot(txs, sent, receipt_keys, pool_keys)
        return [
            ("eth_getTransactionCount", (self.address, "latest")),
            ("eth_getTransactionCount", (self.address, "pending")),
            ("eth_getBalance", (self.address, "latest")),
            *(("eth_getTransactionReceipt", (a.tx_hash,)) for _, a in receipt_keys),
            *(("eth_getTransactionByHash", (a.tx_hash,)) for _, a in pool_keys),
        ]

    async def on_block(self, answers: list[Any]) -> None:
        """Act on the answers to `queries()` for the new head."""
        snapshot = self._snapshot
        if snapshot is None:
            return
        self._snapshot = None
        failed = [answer for answer in answers if isinstance(answer, RpcError)]
        if failed:
            log.warning("block queries answered with errors", extra={"error": str(failed[0])})
            return
        mined_count, pending_count, balance = (int(answer, 16) for answer in answers[:3])
        self._balance = balance
        receipts = answers[3 : 3 + len(snapshot.receipt_keys)]
        in_pool = answers[3 + len(snapshot.receipt_keys) :]
        receipt_of: dict[int, tuple[Attempt, dict[str, Any]]] = {}
        for (tx, attempt), receipt in zip(snapshot.receipt_keys, receipts, strict=True):
            if receipt is not None and id(tx) not in receipt_of:
                receipt_of[id(tx)] = (attempt, receipt)
        pooled = {
            id(tx) for (tx, _), found in zip(snapshot.pool_keys, in_pool, strict=True) if found
        }

        if self._paused_since is not None:
            self._after_pause_check(balance)
        for tx in snapshot.txs:
            if self._txs.get(tx.nonce) is not tx or tx.busy:
                continue
            if id(tx) not in snapshot.sent and tx.sent:
                continue  # sent while the questions were out: their answers predate it
            action = self._step(tx, receipt_of.get(id(tx)), mined_count, id(tx) in pooled)
            if action is not None:
                self._start(tx, action)
        if self._holes(pending_count, mined_count):
            await self._fence.verify()
        for tx in self._fill_gaps(pending_count, mined_count):
            self._start(tx, self._send(tx, tx.attempts[-1]))

    def _start(self, tx: InFlight, action: Coroutine[Any, Any, None]) -> None:
        """Run one block's action for `tx` in the background: the watcher never waits for a
        journal or a send, and a transaction has at most one action at a time."""
        tx.busy = True

        async def run() -> None:
            try:
                await action
            except RpcUnavailable:
                pass
            except Exception:
                log.exception("a lane action failed", extra={"nonce": tx.nonce})
            finally:
                tx.busy = False

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop this lane's running actions (the transactions themselves stay on the chain)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _step(
        self,
        tx: InFlight,
        found: tuple[Attempt, dict[str, Any]] | None,
        mined_count: int,
        pooled: bool,
    ) -> Coroutine[Any, Any, None] | None:
        if found is not None:
            attempt, receipt = found
            if tx.mined is None or tx.mined[0] != attempt:
                tx.receipt_at = time.monotonic()
            tx.mined = found
            tx.consumed_checks = 0
            depth = self._head.number - int(receipt["blockNumber"], 16) + 1
            if depth >= self._config.confirmations:
                return self._resolve(tx, attempt, receipt)
            return None
        if tx.mined is not None:
            mined_attempt = tx.mined[0]
            log.warning(
                "a reorg removed a mined transaction; re-broadcasting it",
                extra={"nonce": tx.nonce, "tx_hash": mined_attempt.tx_hash},
            )
            tx.mined = tx.receipt_at = None
            tx.attempts.remove(mined_attempt)
            tx.attempts.append(mined_attempt)  # the bytes the chain accepted, sent again
            return self._send(tx, mined_attempt)
        if mined_count > tx.nonce:
            tx.consumed_checks += 1
            if tx.consumed_checks >= CONSUMED_CHECKS:
                return self._consumed_elsewhere(tx)
            return None
        tx.consumed_checks = 0
        if self._paused_since is not None:
            return None
        if not tx.sent and not tx.underpriced:
            return self._send(tx, tx.attempts[-1])
        tx.blocks_waiting += 1
        if tx.underpriced or tx.blocks_waiting > self._config.replace_after_blocks:
            return self._replace(tx)
        if not pooled:
            log.info(
                "transaction gone from the mempool; re-sending the same bytes",
                extra={"nonce": tx.nonce, "tx_hash": tx.attempts[-1].tx_hash},
            )
            return self._send(tx, tx.attempts[-1])
        return None

    async def _replace(self, tx: InFlight) -> None:
        last = tx.attempts[-1]
        old = fee_rules.Fees(last.max_fee_per_gas, last.max_priority_fee_per_gas)
        base_fee = self._head.base_fee or 0
        config = self._config
        offer = fee_rules.bumped(old, base_fee, self._head.tip, config.fee_bump, config.fee_cap_wei)
        if offer is None or not self.key.can_sign:  # at the cap, or retired: the same bytes
            await self._send(tx, last)
            return
        await self._fence.verify()
        attempt = self._sign(tx.nonce, last.bucket_name, offer)
        if tx.create is not None:
            try:
                await tx.create.journal(attempt)
            except Exception:
                log.exception("recording a replacement failed; trying again next block")
                return
        tx.attempts.append(attempt)
        self._observer.replaced(self.address)
        log.info(
            "replacing a transaction with bumped fees",
            extra={"nonce": tx.nonce, "tx_hash": attempt.tx_hash, "max_fee": offer.max_fee_per_gas},
        )
        await self._send(tx, attempt)

    async def _resolve(self, tx: InFlight, attempt: Attempt, receipt: dict[str, Any]) -> None:
        try:
            outcome = await self._outcome(attempt, receipt)
        except (RpcUnavailable, RpcError) as exc:
            log.warning(
                "reading a revert failed; trying again next block", extra={"error": str(exc)}
            )
            return
        if self._txs.get(tx.nonce) is tx:
            del self._txs[tx.nonce]
            self._observe_final(tx, receipt, outcome)
        if tx.create is not None:
            tx.create.nonces.discard(tx.nonce)
            if not tx.create.future.done():
                tx.create.future.set_result(outcome)

    def _observe_final(self, tx: InFlight, receipt: dict[str, Any], outcome: Outcome) -> None:
        receipt_s = None
        if tx.first_broadcast is not None and tx.receipt_at is not None:
            receipt_s = max(tx.receipt_at - tx.first_broadcast, 0.0)
        gas_price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        self._observer.mined(self.address, gas_price, receipt_s)
        if int(receipt["status"], 16) == 0 and isinstance(outcome, AlreadyExists | Reverted):
            self._observer.reverted(self.address, outcome)

    async def _outcome(self, attempt: Attempt, receipt: dict[str, Any]) -> Outcome:
        block = int(receipt["blockNumber"], 16)
        if int(receipt["status"], 16) == 1:
            if attempt.kind == FILL:
                return Created(attempt.tx_hash, block, None)
            bucket_id = created_bucket_id(receipt, self._config.contract)
            if bucket_id is None:  # e.g. no contract at that address: nothing was created
                return Reverted(attempt.tx_hash, block, "mined without a CreateBucket log")
            return Created(attempt.tx_hash, block, bucket_id)
        if attempt.kind == FILL:
            return Reverted(attempt.tx_hash, block, "fill reverted")
        error = await self._revert_reason(attempt, receipt)
        if error == reverts.BUCKET_ALREADY_EXISTS:
            return AlreadyExists(attempt.tx_hash, block)
        return Reverted(attempt.tx_hash, block, reverts.revert_name(error))

    async def _revert_reason(self, attempt: Attempt, receipt: dict[str, Any]) -> str:
        """The revert data, from the same call re-run at the block that mined it."""
        if int(receipt.get("gasUsed", "0x0"), 16) >= attempt.gas:
            return "out of gas"
        call = {
            "from": self.address,
            "to": self._config.contract,
            "data": create_call(attempt.bucket_name),
            "gas": hex(attempt.gas),
        }
        try:
            await self._rpc.call("eth_call", call, receipt["blockNumber"])
        except RpcError as exc:
            data = exc.data
            if isinstance(data, dict):
                data = data.get("data")
            return str(data or "0x").lower()
        return "not reproducible"

    async def _consumed_elsewhere(self, tx: InFlight) -> None:
        del self._txs[tx.nonce]
        create = tx.create
        if create is None:
            return
        create.nonces.discard(tx.nonce)
        if create.future.done() or create.nonces:
            return
        if not self.key.can_sign:
            create.future.set_result(
                Refused(
                    error_codes.SIGNER_RETIRED,
                    f"nonce {tx.nonce} of {self.address}, a key no longer in the pool, was used "
                    "by another transaction: this create can never be mined and cannot be "
                    "signed again without the key; nothing was created",
                )
            )
            return
        log.warning(
            "our nonce was used by another transaction of this key; signing the create again",
            extra={"nonce": tx.nonce, "bucket_name": create.name},
        )
        self._next = max(self._next or 0, tx.nonce + 1)
        try:
            await self._sign_and_send(create)
        except Exception as exc:
            log.exception("signing the create again failed")
            if not create.future.done():
                create.future.set_exception(exc)

    def _after_pause_check(self, balance: int) -> None:
        if balance >= self._funds_needed():
            self._unpause()
            return
        now = time.monotonic()
        # An unsent create never accepted anywhere is refused past its wait; its nonce becomes
        # a gap to fill later.
        for tx in [tx for tx in self._txs.values() if not tx.sent]:
            if tx.accepted or tx.create is None or tx.unfunded_since is None:
                continue
            if now - tx.unfunded_since < self._config.insufficient_funds_wait_s:
                continue
            del self._txs[tx.nonce]
            tx.create.nonces.discard(tx.nonce)
            if not tx.create.nonces and not tx.create.future.done():
                tx.create.future.set_result(self._refusal())

    def _holes(self, pending_count: int, mined_count: int) -> list[int]:
        waiting = [n for n, tx in self._txs.items() if tx.mined is None]
        if not waiting or self._paused_since is not None or not self.key.can_sign:
            return []
        start = max(pending_count, mined_count)
        return [
            n for n in range(start, min(waiting)) if n not in self._reserved and n not in self._txs
        ]

    def _fill_gaps(self, pending_count: int, mined_count: int) -> list[InFlight]:
        """Self-transfers, signed and tracked, for the nonces below our lowest in flight that
        nobody holds (a create refused or never recorded); the caller sends them."""
        holes = self._holes(pending_count, mined_count)
        offer = fee_rules.first_offer(
            self._head.base_fee or 0, self._head.tip, self._config.fee_cap_wei
        )
        fills = []
        for nonce in holes:
            log.warning("filling a nonce gap with a self-transfer", extra={"nonce": nonce})
            tx = InFlight(nonce, None, [self._sign(nonce, "", offer)])
            self._txs[nonce] = tx
            fills.append(tx)
        return fills


def create_call(name: str) -> str:
    """Calldata of `createBucket(name)`."""
    return reverts.CREATE_BUCKET + encode(["string"], [name]).hex()


def created_bucket_id(receipt: dict[str, Any], contract: str) -> str | None:
    for entry in receipt.get("logs", []):
        topics = entry.get("topics", [])
        if (
            topics
            and topics[0].lower() == reverts.CREATE_BUCKET_TOPIC
            and entry.get("address", "").lower() == contract.lower()
        ):
            return str(topics[1]).lower() if len(topics) > 1 else None
    return None
