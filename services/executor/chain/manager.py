"""The transaction manager: a lane per signing key and one block watcher for all of them.

The watcher reads the head (`eth_getBlockByNumber latest`) every `poll_interval_s`; on a new
head (a new hash: a reorg at the same height counts) it sends ONE JSON-RPC batch with every
lane's nonces, balance, receipts of every attempt in flight and their mempool presence, and
hands each lane its answers. Nothing polls per transaction. With the node unreachable it backs
off (up to `backoff_max_s`) and carries on where it was: nothing is abandoned or re-signed.

Recorded creates signed by a key no longer in the pool (the pool changed across a restart)
are followed by a watch-only lane of that address: the same receipts, mempool and nonce
checks, its recorded bytes re-broadcast, nothing signed (`keys.RetiredKey`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Sequence

from services.executor.chain.fence import UNFENCED, Fence
from services.executor.chain.keys import RetiredKey, SigningKey, key_for
from services.executor.chain.lane import Head, Lane, LaneConfig
from services.executor.chain.observer import UNOBSERVED, LaneObserver
from services.executor.chain.records import Attempt, Journal, LaneStatus, Outcome
from services.executor.chain.rpc import JsonRpc, Request, RpcError, RpcUnavailable

log = logging.getLogger(__name__)


class TransactionManager:
    """`start()` it, `create()`/`resume()` through it, `close()` it."""

    def __init__(
        self,
        rpc: JsonRpc,
        keys: Sequence[SigningKey],
        config: LaneConfig,
        poll_interval_s: float = 0.5,
        fence: Fence = UNFENCED,
        observer: LaneObserver = UNOBSERVED,
    ) -> None:
        if not keys:
            raise ValueError("the transaction manager needs at least one signing key")
        self._rpc = rpc
        self._keys = list(keys)
        self._config = config
        self._poll = poll_interval_s
        self.head = Head()
        self._observer = observer
        self._lanes = {
            key.address: Lane(key, rpc, self.head, config, fence, observer) for key in self._keys
        }
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="chain-block-watcher")

    async def close(self) -> None:
        """Stop watching; transactions in flight stay on the chain, their attempts recorded."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await asyncio.gather(*(lane.close() for lane in self._lanes.values()))

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def lane_for(self, name: str) -> Lane:
        return self._lanes[key_for(name, self._keys).address]

    async def create(self, name: str, journal: Journal, job: Hashable | None = None) -> Outcome:
        """Create bucket `name` with its key's lane; every attempt is given to `journal` first.
        `job`: the caller's job, so that a later run of it follows its create still in flight."""
        return await self.lane_for(name).create(name, journal, job)

    async def resume(self, attempts: Sequence[Attempt], journal: Journal) -> Outcome:
        """Follow one create's recorded attempts (from before a restart) to their outcome."""
        return await asyncio.shield(self.follow(attempts, journal))

    def follow(self, attempts: Sequence[Attempt], journal: Journal) -> asyncio.Future[Outcome]:
        """`resume` without the wait: the attempts are tracked by their lane when it returns
        (so it can be done for every recorded create before any new one is signed)."""
        if not attempts:
            raise ValueError("resume needs the recorded attempts of a create")
        signers = {attempt.signer for attempt in attempts}
        if len(signers) != 1:
            raise ValueError(f"one create's attempts come from one key, not {sorted(signers)}")
        (signer,) = signers
        lane = self._lanes.get(signer)
        if lane is None:
            log.warning(
                "following recorded transactions of a key no longer in the pool, watch only",
                extra={"address": signer},
            )
            lane = Lane(
                RetiredKey(signer), self._rpc, self.head, self._config, UNFENCED, self._observer
            )
            self._lanes[signer] = lane
        return lane.follow(attempts, journal)

    def status(self) -> list[LaneStatus]:
        """The pool's lanes, and a retired key's while it has transactions in flight."""
        return [
            status
            for lane in self._lanes.values()
            if (status := lane.status()).in_flight or lane.key.can_sign
        ]

    async def _watch(self) -> None:
        delay = self._poll
        unreachable = False
        while True:
            try:
                await self._on_tick()
            except RpcUnavailable as exc:
                if not unreachable:
                    log.warning("chain RPC unreachable; backing off", extra={"error": str(exc)})
                unreachable = True
                delay = min(max(delay, self._poll) * 2, self._config.backoff_max_s)
            except RpcError as exc:
                log.warning("chain RPC refused the block queries", extra={"error": str(exc)})
            except Exception:
                log.exception("the block watcher failed a round; carrying on")
            else:
                if unreachable:
                    log.info("chain RPC reachable again")
                unreachable = False
                delay = self._poll
            await asyncio.sleep(delay)

    async def _on_tick(self) -> None:
        block = await self._rpc.call("eth_getBlockByNumber", "latest", False)
        if block is None or block["hash"] == self.head.hash:
            return
        lanes = list(self._lanes.values())
        queries: list[Request] = [("eth_maxPriorityFeePerGas", ())]
        spans: list[tuple[Lane, int, int]] = []
        for lane in lanes:
            lane_queries = lane.queries()
            spans.append((lane, len(queries), len(queries) + len(lane_queries)))
            queries.extend(lane_queries)
        answers = await self._rpc.batch(queries)
        tip = answers[0]
        self.head.number = int(block["number"], 16)
        self.head.hash = block["hash"]
        self.head.base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
        if not isinstance(tip, RpcError):
            self.head.tip = int(tip, 16)
        await asyncio.gather(*(lane.on_block(answers[a:b]) for lane, a, b in spans))
