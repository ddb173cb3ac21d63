"""A stand-in for the Akave chain, kept in Postgres so every executor process shares it.

It behaves like the chain where the gateway can tell: bucket names are unique per owner,
a transaction takes `SIM_LATENCY_MS`, its hash is 64 hex characters without `0x`, a second
transaction from an owner whose first is still in flight is refused with "nonce too low",
and creating an existing name reverts with the `BucketAlreadyExists` selector. State survives
restarts (schema `akave_sim`, in `SIM_DATABASE_URL` if set, else the gateway's database).
Every create call is recorded so tests can count them.

Faults: a global transient failure rate and permanent error from settings, and per-name
faults that tests (or an operator rehearsing an incident) queue with `inject_fault`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.executor.backends.base import ChainBucket, CreatedBucket
from services.executor.errors import BackendError
from shared.db import make_engine
from shared.settings import Settings

FaultKind = Literal["transient", "insufficient_funds", "receipt_timeout"]
_FAULT_MESSAGES: dict[str, str] = {
    "transient": "bucket creation failed: connection reset by peer (simulated)",
    "insufficient_funds": "bucket creation failed: insufficient funds for gas * price + value",
    "receipt_timeout": "bucket creation failed: Transaction is not in the chain after 120 seconds",
    "invalid_bucket_name": "invalid bucket name",
}
_SCHEMA = (
    "CREATE SCHEMA IF NOT EXISTS akave_sim",
    """CREATE TABLE IF NOT EXISTS akave_sim.buckets (
        owner text NOT NULL, name text NOT NULL, id text NOT NULL, tx_hash text NOT NULL,
        created_at bigint NOT NULL, PRIMARY KEY (owner, name))""",
    """CREATE TABLE IF NOT EXISTS akave_sim.create_calls (
        id bigserial PRIMARY KEY, owner text NOT NULL, name text NOT NULL,
        outcome text NOT NULL, at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS create_calls_name ON akave_sim.create_calls (name)",
    """CREATE TABLE IF NOT EXISTS akave_sim.faults (
        name text PRIMARY KEY, kind text NOT NULL, remaining integer NOT NULL)""",
)


class SimulatedChain:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")  # one round trip
        self._owner = settings.sim_owner
        self._latency = settings.sim_latency_ms / 1000
        self._transient_rate = settings.sim_transient_failure_rate
        self._permanent = settings.sim_permanent_error

    @classmethod
    async def open(cls, settings: Settings) -> SimulatedChain:
        if settings.sim_database_url:  # a chain apart from the gateway's own database
            settings = settings.model_copy(update={"database_url": settings.sim_database_url})
        # A connection per concurrent chain read plus the transaction, and no overflow:
        # overflow connections are opened and closed per use, which under load cost more
        # than the queries (measured in docs/benchmarks.md).
        engine = make_engine(
            settings, pool_size=min(settings.executor_concurrency, 16) + 1, max_overflow=0
        )
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('akave_sim.schema'))"))
            for statement in _SCHEMA:
                await conn.execute(text(statement))
        return cls(engine, settings)

    async def close(self) -> None:
        await self._engine.dispose()

    async def view_bucket(self, name: str) -> ChainBucket | None:
        if not name:
            raise BackendError("empty bucket name")
        async with self._reads.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT id, created_at FROM akave_sim.buckets WHERE owner=:o AND name=:n"),
                    {"o": self._owner, "n": name},
                )
            ).first()
        return (
            None if row is None else ChainBucket(name, bucket_id=row.id, created_at=row.created_at)
        )

    async def create_bucket(self, name: str) -> CreatedBucket:
        if len(name) < 3:
            raise BackendError("invalid bucket name")
        # One database transaction is one chain transaction: it holds the owner's "nonce" (an
        # advisory lock released by Postgres on commit, on rollback, or when this process dies)
        # while the transaction is in flight, and "mines" it (the bucket row) on commit.
        failure: BackendError | None
        async with self._engine.begin() as tx:
            # The commit does not wait for the WAL flush: the chain's time is SIM_LATENCY_MS,
            # not the disk's, and executor crashes (what the tests do) lose nothing; only a
            # crash of Postgres itself could forget the last moments' transactions.
            got = await tx.scalar(
                text(
                    "SELECT pg_try_advisory_xact_lock(hashtext('akave_sim.nonce:' || :o)) "
                    "FROM set_config('synchronous_commit', 'off', true)"
                ),
                {"o": self._owner},
            )
            if not got:
                await self._record(name, "nonce_too_low", tx)
                failure = BackendError("bucket creation failed: nonce too low")
            else:
                failure, created = await self._mine(name, tx)
        if failure is not None:
            raise failure
        return created

    async def _mine(
        self, name: str, tx: AsyncConnection
    ) -> tuple[BackendError | None, CreatedBucket]:
        created = CreatedBucket(tx_hash="", name=name)
        if self._permanent:
            await self._record(name, self._permanent, tx)
            return BackendError(_FAULT_MESSAGES[self._permanent]), created
        fault = await tx.scalar(
            text(
                "UPDATE akave_sim.faults SET remaining = remaining - 1 "
                "WHERE name = :n AND remaining > 0 RETURNING kind"
            ),
            {"n": name},
        )
        if fault is None and random.random() < self._transient_rate:
            fault = "transient"
        if self._latency:
            await asyncio.sleep(self._latency)
        if fault is not None:
            await self._record(name, fault, tx)
            return BackendError(_FAULT_MESSAGES[fault]), created
        tx_hash = secrets.token_hex(32)
        bucket_id = hashlib.sha3_256(name.encode() + self._owner.encode()).hexdigest()
        created_at = int(time.time())
        outcome = await tx.scalar(
            text(
                "WITH mined AS (INSERT INTO akave_sim.buckets "
                "(owner, name, id, tx_hash, created_at) VALUES (:o, :n, :i, :t, :c) "
                "ON CONFLICT DO NOTHING RETURNING name) "
                "INSERT INTO akave_sim.create_calls (owner, name, outcome) "
                "SELECT :o, :n, CASE WHEN EXISTS (SELECT 1 FROM mined) THEN 'created' "
                "ELSE 'reverted' END RETURNING outcome"
            ),
            {"o": self._owner, "n": name, "i": bucket_id, "t": tx_hash, "c": created_at},
        )
        if outcome != "created":
            return BackendError(
                f"bucket creation failed: execution reverted: 0x497ef2c2 (tx {tx_hash})"
            ), created
        return None, CreatedBucket(
            tx_hash=tx_hash, name=name, bucket_id=bucket_id, created_at=created_at
        )

    async def _record(self, name: str, outcome: str, conn: AsyncConnection | None = None) -> None:
        statement = text(
            "INSERT INTO akave_sim.create_calls (owner, name, outcome) VALUES (:o, :n, :r)"
        )
        params = {"o": self._owner, "n": name, "r": outcome}
        if conn is not None:
            await conn.execute(statement, params)
            return
        async with self._engine.begin() as own:
            await own.execute(statement, params)

    # Test and rehearsal hooks -------------------------------------------------------------

    async def inject_fault(self, name: str, kind: FaultKind, times: int) -> None:
        """Make the next `times` create calls for `name` fail with `kind`."""
        async with self._engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO akave_sim.faults (name, kind, remaining) VALUES (:n, :k, :r) "
                    "ON CONFLICT (name) DO UPDATE SET kind = :k, remaining = :r"
                ),
                {"n": name, "k": kind, "r": times},
            )

    async def create_calls(self, name: str) -> dict[str, int]:
        """How many create calls for `name` ended each way (created, reverted, ...)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT outcome, count(*) FROM akave_sim.create_calls "
                    "WHERE name = :n GROUP BY outcome"
                ),
                {"n": name},
            )
            return {outcome: count for outcome, count in rows}
