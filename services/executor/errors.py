"""Which chain errors are worth another attempt, and the stable error code of each.

The codes themselves are defined in `shared.error_codes`; this module only classifies.

The SDK wraps every failure in `SDKError` with the node's text inside, so the only thing to
classify on is the message. A message no rule knows is `backend_error` and retryable: any
exception is worth another attempt (docs/decisions.md).
"""

from __future__ import annotations

from services.executor.chain.records import AlreadyExists, Reverted
from shared.error_codes import (
    BACKEND_ERROR,
    BACKEND_UNAVAILABLE,
    BUCKET_ALREADY_ON_CHAIN,
    BUCKET_INVALID,
    INSUFFICIENT_FUNDS,
    INVALID_BUCKET_NAME,
    NONCE_CONFLICT,
    OUT_OF_GAS,
    RECEIPT_TIMEOUT,
    TRANSACTION_REVERTED,
)
from shared.errors import GatewayError, RestartNeeded

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


class ExecutorError(GatewayError):
    """Root of the errors the executor raises."""


class BackendError(ExecutorError):
    """A failed chain call with a stable `code` and whether trying again can help."""

    def __init__(self, message: str, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        guessed_code, guessed_retryable = classify(message)
        self.code = code or guessed_code
        self.retryable = guessed_retryable if retryable is None else retryable


class AkaveConfigurationError(ExecutorError, RuntimeError):
    """The Akave backend cannot start: the SDK is missing, there is no key, or bad settings."""


def revert_code(outcome: AlreadyExists | Reverted) -> str:
    """The error code of a create the chain mined and reverted (`AlreadyExists`: with
    `BucketAlreadyExists()`; `Reverted`: with its decoded error)."""
    if isinstance(outcome, AlreadyExists):
        return BUCKET_ALREADY_ON_CHAIN
    return _REVERT_CODES.get(outcome.error, TRANSACTION_REVERTED)


class SignerFenceLost(ExecutorError, RestartNeeded):
    """Another executor may hold our signing keys now: this one starts again, as a standby."""
