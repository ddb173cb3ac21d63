"""Which chain errors are worth another attempt, and the stable error code of each.

The SDK wraps every failure in `SDKError` with the node's text inside, so the only thing to
classify on is the message. Unknown errors are retried: the seed's rule is "any exception".
"""

from __future__ import annotations

from shared.error_codes import (
    ATTEMPT_TIMEOUT,
    ATTEMPTS_EXHAUSTED,
    BACKEND_ERROR,
    BACKEND_UNAVAILABLE,
    BUCKET_ALREADY_ON_CHAIN,
    BUCKET_EXISTS,
    BUCKET_INVALID,
    INSUFFICIENT_FUNDS,
    INVALID_BUCKET_NAME,
    NONCE_CONFLICT,
    OUT_OF_GAS,
    RECEIPT_TIMEOUT,
    TRANSACTION_REVERTED,
)

# The codes are defined in `shared.error_codes`; the executor names them as `errors.<CODE>`.
__all__ = [
    "ATTEMPTS_EXHAUSTED",
    "ATTEMPT_TIMEOUT",
    "BACKEND_ERROR",
    "BACKEND_UNAVAILABLE",
    "BUCKET_ALREADY_ON_CHAIN",
    "BUCKET_EXISTS",
    "INSUFFICIENT_FUNDS",
    "INVALID_BUCKET_NAME",
    "NONCE_CONFLICT",
    "OUT_OF_GAS",
    "RECEIPT_TIMEOUT",
    "TRANSACTION_REVERTED",
    "classify",
    "revert_code",
]

# The decoded revert of a mined create (`chain.reverts.revert_name`) -> its error code.
_REVERT_CODES = {"out of gas": OUT_OF_GAS, "BucketInvalid": BUCKET_INVALID}

# (code, retryable, lowercase fragments of the message); first match wins.
_RULES: tuple[tuple[str, bool, tuple[str, ...]], ...] = (
    (INVALID_BUCKET_NAME, False, ("invalid bucket name", "empty bucket name")),
    (INSUFFICIENT_FUNDS, False, ("insufficient funds",)),
    (BUCKET_ALREADY_ON_CHAIN, True, ("0x497ef2c2", "bucketalreadyexists")),
    (NONCE_CONFLICT, True, ("nonce too low", "replacement transaction underpriced")),
    (RECEIPT_TIMEOUT, True, ("is not in the chain after",)),
    (
        BACKEND_UNAVAILABLE,
        True,
        ("failed to initialize ipc", "unavailable", "connection refused", "eof", "deadline"),
    ),
)


def classify(message: str) -> tuple[str, bool]:
    """(error_code, retryable) for a chain error message."""
    lowered = message.lower()
    for code, retryable, fragments in _RULES:
        if any(fragment in lowered for fragment in fragments):
            return code, retryable
    return BACKEND_ERROR, True


def revert_code(error_name: str) -> str:
    """The error code of a create the chain mined and reverted with `error_name`."""
    return _REVERT_CODES.get(error_name, TRANSACTION_REVERTED)
