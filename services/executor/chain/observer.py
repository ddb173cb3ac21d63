"""What a lane reports as it happens: the port the executor's chain metrics are fed through
(services/executor/chain_metrics.py implements it; this package imports no metrics library).

Rules:
- The lane calls it at the event, with no await between the event and the call; an observer
  only counts, it never blocks, awaits or raises.
- `signer` is the lane's checksummed address, never the key.
- Each event is reported once: a replacement when its attempt is recorded, a re-broadcast when
  its bytes go to the node again, a mined transaction when it is final (with its confirmations).
- What a lane *is* (in flight, next nonce, balance, paused) is not reported here: it is read from
  the lane's `status()` when asked, the same numbers /health shows.
"""

from __future__ import annotations

from typing import Protocol

from services.executor.chain.records import AlreadyExists, Reverted


class LaneObserver(Protocol):
    def replaced(self, signer: str) -> None:
        """A transaction not mined in time was signed again at its nonce with bumped fees."""

    def resent(self, signer: str) -> None:
        """Signed bytes the node had accepted before were broadcast again unchanged: gone from
        the mempool, removed by a reorg, or the fees at their cap."""

    def mined(self, signer: str, gas_price_wei: int, receipt_s: float | None) -> None:
        """A transaction is final: its effective gas price, and the seconds from its first
        broadcast by this process to its receipt (None if this process never broadcast it)."""

    def reverted(self, signer: str, outcome: AlreadyExists | Reverted) -> None:
        """A final transaction reverted (its receipt's status is 0), with the decoded error."""


class Unobserved:
    """Nobody watches (tests, tools): every report is dropped."""

    def replaced(self, signer: str) -> None:
        return None

    def resent(self, signer: str) -> None:
        return None

    def mined(self, signer: str, gas_price_wei: int, receipt_s: float | None) -> None:
        return None

    def reverted(self, signer: str, outcome: AlreadyExists | Reverted) -> None:
        return None


UNOBSERVED = Unobserved()
