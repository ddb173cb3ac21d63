"""The two directions between a signed `chain.records.Attempt` and its event in the log,
`BucketTransactionSigned`: the job flow records attempts with one, the ledger reads them back
with the other, so a restarted executor resolves a job from exactly what was signed."""

from __future__ import annotations

import uuid

from services.executor.chain.records import CREATE, Attempt
from shared.events import BucketTransactionSigned


def signed_event(
    job_id: uuid.UUID, job_attempt: int, attempt: Attempt, replacement: bool
) -> BucketTransactionSigned:
    return BucketTransactionSigned(
        job_id=job_id,
        bucket_name=attempt.bucket_name,
        attempt=job_attempt,
        kind="replacement" if replacement else "create",
        signer=attempt.signer,
        chain_id=attempt.chain_id,
        nonce=attempt.nonce,
        tx_hash=attempt.tx_hash,
        raw_transaction=attempt.raw,
        max_fee_per_gas=attempt.max_fee_per_gas,
        max_priority_fee_per_gas=attempt.max_priority_fee_per_gas,
        gas=attempt.gas,
    )


def recorded_attempt(data: BucketTransactionSigned) -> Attempt:
    return Attempt(
        signer=data.signer,
        chain_id=data.chain_id,
        nonce=data.nonce,
        tx_hash=data.tx_hash,
        raw=data.raw_transaction,
        max_fee_per_gas=data.max_fee_per_gas,
        max_priority_fee_per_gas=data.max_priority_fee_per_gas,
        gas=data.gas,
        bucket_name=data.bucket_name,
        kind=CREATE,
    )
