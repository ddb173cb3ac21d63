"""What the system says happened, read straight from its stores after a scenario.

Three independent witnesses: the read model (`bucket_jobs`), a fresh fold of the whole event
log (the same pure `shared.fold.apply` the projector uses, but on our own copy of every
record), and the chain itself: every `CreateBucket` log of the scenario's Storage contract
(`eth_getLogs`, read straight from anvil), mapped back to our names and owners, and the
receipt of every transaction the log says we signed (`BucketTransactionSigned`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from eth_utils.crypto import keccak
from sqlalchemy import create_engine, text

from localinfra.anvil import LocalAnvil
from services.executor.chain.reverts import CREATE_BUCKET_TOPIC
from shared.errors import MalformedEvent, UnknownEventType
from shared.events import BucketTransactionSigned, decode
from shared.fold import JobState, JobStatus, apply
from shared.settings import Settings
from tests.support.stack import read_events


def bucket_id(name: str, owner: str) -> str:
    """The Storage contract's bucket id: keccak256(name ‖ owner address)."""
    return "0x" + keccak(name.encode() + bytes.fromhex(owner[2:])).hex()


@dataclass(frozen=True)
class CreateLog:
    """One `CreateBucket` log of the scenario's contract."""

    tx_hash: str
    owner: str  # 0x-address, lower case
    id_matches: bool  # its bucket id is keccak256(name ‖ owner)


@dataclass(frozen=True)
class Row:
    """The fields of one job that the read model and the log fold must agree on."""

    bucket_name: str
    status: str
    tx_hash: str | None
    error_code: str | None
    attempts: int


@dataclass
class Evidence:
    read_model: dict[uuid.UUID, Row]
    log_fold: dict[uuid.UUID, Row]
    malformed_records: int
    unknown_records: int
    owners: frozenset[str]  # our signing keys' addresses, lower case
    creates: dict[str, list[CreateLog]]  # our bucket name -> its CreateBucket logs
    foreign_creates: int  # CreateBucket logs of a name that is not ours
    signed: dict[str, list[str]]  # bucket name -> hashes of every transaction we signed for it
    receipts: dict[str, int | None]  # signed hash -> receipt status (1, 0), None: not mined
    parked: list[dict[str, str]] = field(default_factory=list)  # DLQ record headers

    def duplicate_creates(self) -> dict[str, int]:
        return {name: len(logs) - 1 for name, logs in self.creates.items() if len(logs) > 1}

    def reverted(self) -> list[str]:
        return [tx for tx, status in self.receipts.items() if status == 0]


def _row(state: JobState) -> Row:
    return Row(
        state.bucket_name, str(state.status), state.tx_hash, state.error_code, state.attempts
    )


async def fold_log(
    settings: Settings,
) -> tuple[dict[uuid.UUID, Row], int, int, dict[str, list[str]]]:
    """Every job as the log alone tells it: (jobs, malformed records, unknown-type records,
    bucket name -> the hashes of every transaction signed for it)."""
    records = sorted(await read_events(settings), key=lambda r: (r.partition, r.offset))
    signed: dict[str, list[str]] = {}
    jobs: dict[uuid.UUID, JobState] = {}
    owners: dict[str, uuid.UUID] = {}
    malformed = unknown = 0
    for record in records:
        try:
            event = decode(record.value)
        except UnknownEventType:
            unknown += 1
            continue
        except MalformedEvent:
            malformed += 1
            continue
        if isinstance(event.data, BucketTransactionSigned):
            signed.setdefault(event.data.bucket_name, []).append(event.data.tx_hash)
        after = apply(jobs.get(event.job_id), event, owners.get(event.data.bucket_name))
        if after is None:
            continue
        jobs[event.job_id] = after
        if after.status is JobStatus.COMPLETED:
            owners.setdefault(after.bucket_name, after.job_id)
    jobs_rows = {job_id: _row(state) for job_id, state in jobs.items()}
    return jobs_rows, malformed, unknown, signed


def read_model(settings: Settings) -> dict[uuid.UUID, Row]:
    """Every row of `bucket_jobs` (blocking; run it in a thread)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, bucket_name, status, tx_hash, error_code, attempts FROM bucket_jobs"
                )
            ).all()
    finally:
        engine.dispose()
    return {r.id: Row(r.bucket_name, r.status, r.tx_hash, r.error_code, r.attempts) for r in rows}


def create_logs(
    chain: LocalAnvil, contract: str, names: set[str]
) -> tuple[dict[str, list[CreateLog]], int]:
    """Every `CreateBucket` log of `contract`, by our bucket name (topic 2 is keccak256 of the
    name, topic 3 the owner), and how many name none of ours (blocking)."""
    by_hash = {"0x" + keccak(text=name).hex(): name for name in names}
    entries = chain.rpc(
        "eth_getLogs",
        {
            "address": contract,
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [CREATE_BUCKET_TOPIC],
        },
        timeout=60,
    )
    creates: dict[str, list[CreateLog]] = {}
    foreign = 0
    for entry in entries:
        topics = entry["topics"]
        name = by_hash.get(topics[2].lower())
        if name is None:
            foreign += 1
            continue
        owner = "0x" + topics[3][-40:].lower()
        log = CreateLog(
            entry["transactionHash"], owner, topics[1].lower() == bucket_id(name, owner)
        )
        creates.setdefault(name, []).append(log)
    return creates, foreign


def receipt_statuses(chain: LocalAnvil, hashes: list[str]) -> dict[str, int | None]:
    """The receipt status of each transaction: 1 succeeded, 0 reverted, None not mined."""
    statuses: dict[str, int | None] = {}
    for tx_hash in hashes:
        receipt = chain.rpc("eth_getTransactionReceipt", tx_hash)
        statuses[tx_hash] = None if receipt is None else int(receipt["status"], 16)
    return statuses


def terminal_in_read_model(settings: Settings, job_ids: list[str]) -> int:
    """How many of `job_ids` the read model shows completed or failed (blocking)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    text(
                        "SELECT count(*) FROM bucket_jobs WHERE status IN ('completed', 'failed') "
                        "AND id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": job_ids},
                )
                or 0
            )
    finally:
        engine.dispose()


async def gather(
    settings: Settings, chain: LocalAnvil, names: set[str], owners: list[str]
) -> Evidence:
    """Every witness, once the scenario has settled; `names` are all we submitted, `owners`
    the addresses of our signing keys."""
    rows = await asyncio.to_thread(read_model, settings)
    log_fold, malformed, unknown, signed = await fold_log(settings)
    parked = [
        {k: v.decode() for k, v in record.headers}
        for record in await read_events(settings, settings.dead_letter_topic)
    ]
    contract = settings.chain_contract_address
    creates, foreign = await asyncio.to_thread(create_logs, chain, contract, names)
    hashes = [tx for txs in signed.values() for tx in txs]
    receipts = await asyncio.to_thread(receipt_statuses, chain, hashes)
    return Evidence(
        read_model=rows,
        log_fold=log_fold,
        malformed_records=malformed,
        unknown_records=unknown,
        owners=frozenset(o.lower() for o in owners),
        creates=creates,
        foreign_creates=foreign,
        signed=signed,
        receipts=receipts,
        parked=parked,
    )
