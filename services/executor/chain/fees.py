"""EIP-1559 fees: the first offer, and the bump of a replacement at the same nonce.

geth and subnet-evm accept a replacement only if both the fee cap and the tip rise by their
price bump (10 %); we raise both by `bump` (at least 12.5 %, the next base fee's largest step).
A replacement never offers more than `cap_wei` per gas; once there, the same bytes are
re-broadcast instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_BUMP = 1.125


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def first_offer(base_fee: int, tip: int, cap_wei: int) -> Fees:
    """Twice the base fee plus the tip: survives six full blocks of base-fee rises."""
    fee = min(cap_wei, 2 * base_fee + tip)
    return Fees(fee, min(tip, fee))


def bumped(old: Fees, base_fee: int, tip: int, bump: float, cap_wei: int) -> Fees | None:
    """The replacement's fees, or None when the cap leaves no room for a valid bump."""
    factor = max(bump, MIN_BUMP)
    new_tip = max(math.ceil(old.max_priority_fee_per_gas * factor), tip)
    new_fee = max(math.ceil(old.max_fee_per_gas * factor), 2 * base_fee + new_tip)
    new_fee = min(new_fee, cap_wei)
    new_tip = min(new_tip, new_fee)
    if new_fee < math.ceil(old.max_fee_per_gas * factor) or new_tip < math.ceil(
        old.max_priority_fee_per_gas * factor
    ):
        return None
    return Fees(new_fee, new_tip)
