"""What a refused `eth_sendRawTransaction` means for the attempt, from the node's message.

Nodes word these differently (geth, anvil, subnet-evm, Erigon); the fragments below cover
them. Anything unrecognised is *maybe sent*: it is resolved from receipts and the chain's
nonce, never by signing again.
"""

from __future__ import annotations

from enum import Enum


class SendVerdict(Enum):
    MAYBE_SENT = "maybe_sent"  # already known, nonce too low, unknown: resolve, don't resend
    INSUFFICIENT_FUNDS = "insufficient_funds"  # the key cannot pay: pause the lane
    UNDERPRICED = "underpriced"  # below the base fee or the pool's minimum: bump the fees


_RULES: tuple[tuple[SendVerdict, tuple[str, ...]], ...] = (
    (SendVerdict.INSUFFICIENT_FUNDS, ("insufficient funds", "insufficient balance")),
    (
        SendVerdict.UNDERPRICED,
        (
            "less than block base fee",
            "fee cap less than block base fee",
            "max fee per gas less than",
            "transaction underpriced",
            "fee too low",
        ),
    ),
)


def classify(message: str) -> SendVerdict:
    lowered = message.lower()
    if "replacement" in lowered:  # "replacement transaction underpriced": ours is in the pool
        return SendVerdict.MAYBE_SENT
    for verdict, fragments in _RULES:
        if any(fragment in lowered for fragment in fragments):
            return verdict
    return SendVerdict.MAYBE_SENT
