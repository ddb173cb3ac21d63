"""The stable `error_code` values of a failed job (`BucketFailed.error_code`, `bucket_jobs`).

They are part of the published contract: clients branch on them, so a code is never renamed
or reused. Which of them are worth another attempt is the executor's business
(`services/executor/errors.py`).
"""

from __future__ import annotations

INVALID_BUCKET_NAME = "invalid_bucket_name"
INSUFFICIENT_FUNDS = "insufficient_funds"
BUCKET_EXISTS = "bucket_exists"
BUCKET_ALREADY_ON_CHAIN = "bucket_already_on_chain"
NONCE_CONFLICT = "nonce_conflict"
RECEIPT_TIMEOUT = "receipt_timeout"
ATTEMPT_TIMEOUT = "attempt_timeout"
BACKEND_UNAVAILABLE = "backend_unavailable"
BACKEND_ERROR = "backend_error"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
# A create recorded under a key since removed from the pool, whose nonce another transaction
# of that key used: it can never be mined, and nothing signs it again.
SIGNER_RETIRED = "signer_retired"
# A mined create that reverted; `error` names the contract's decoded error.
TRANSACTION_REVERTED = "transaction_reverted"  # an error with no code of its own below
OUT_OF_GAS = "out_of_gas"
BUCKET_INVALID = "bucket_invalid"  # the contract's BucketInvalid()
