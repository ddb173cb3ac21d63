"""What the transaction manager hands the job flow: signed attempts (to record before they are
broadcast) and outcomes. Plain frozen data; the job flow turns them into events.

The signed bytes of an attempt are what a crash recovery re-broadcasts; they are not secret
(anyone who sees them in a mempool has them too), but the key that signed them never appears.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

CREATE: Literal["create"] = "create"
FILL: Literal["fill"] = "fill"  # a 0-value self-transfer that fills a nonce gap; never recorded
Kind = Literal["create", "fill"]


@dataclass(frozen=True)
class Attempt:
    """One signed transaction; several attempts share a nonce when fees are bumped."""

    signer: str  # checksummed address of the key that signed it
    chain_id: int
    nonce: int
    tx_hash: str  # 0x-prefixed, lower case
    raw: str  # the signed bytes, 0x-prefixed hex
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    gas: int
    bucket_name: str  # "" for a fill
    kind: Kind = CREATE


Journal = Callable[[Attempt], Awaitable[None]]
"""Awaited with every new attempt before it is broadcast; if it raises, nothing is sent."""


@dataclass(frozen=True)
class Created:
    tx_hash: str
    block_number: int
    bucket_id: str | None  # from the CreateBucket log, 0x hex


@dataclass(frozen=True)
class AlreadyExists:
    """Mined, reverted with `BucketAlreadyExists()`: the name is taken for this owner."""

    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class Reverted:
    tx_hash: str
    block_number: int
    error: str  # the decoded custom error's name, or the revert data in hex


@dataclass(frozen=True)
class Refused:
    """No transaction of this create is mined and none ever will be: the node never accepted
    one (e.g. `insufficient_funds`), or a retired key's nonce went to another transaction
    (`signer_retired`)."""

    code: str  # an `errors` code, e.g. insufficient_funds
    message: str


Outcome = Created | AlreadyExists | Reverted | Refused


@dataclass(frozen=True)
class LaneStatus:
    """One key's lane, for /health: paused means sends are refused for lack of funds."""

    address: str
    in_flight: int
    next_nonce: int | None
    paused: bool
    balance_wei: int | None
    reason: str | None = None
