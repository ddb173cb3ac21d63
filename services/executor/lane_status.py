"""Publishing each signing key's lane status to `signer_lanes`, for /health.

Only the executor holding the keys' fence publishes. It upserts every lane every
`interval_s`, changed or not: `updated_at` is the heartbeat by which the API tells a live
lane from one whose executor stopped. The rows of the chain's other addresses (a key that
left the pool, once nothing of it is in flight) are deleted in the same transaction: every
executor runs the same pool. A failed write is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.executor.chain.records import LaneStatus
from shared.models import SignerLane

log = logging.getLogger(__name__)


def executor_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def publish_once(engine: AsyncEngine, chain_id: int, lanes: list[LaneStatus]) -> None:
    if not lanes:
        return
    rows = [
        {
            "chain_id": chain_id,
            "address": lane.address,
            "next_nonce": lane.next_nonce,
            "in_flight": lane.in_flight,
            "paused": lane.paused,
            "reason": lane.reason,
            "balance_wei": lane.balance_wei,
            "executor": executor_id(),
            "updated_at": func.now(),
        }
        for lane in lanes
    ]
    statement = insert(SignerLane).values(rows)
    columns = {c: statement.excluded[c] for c in rows[0] if c not in ("chain_id", "address")}
    gone = delete(SignerLane).where(
        SignerLane.chain_id == chain_id, SignerLane.address.not_in([r["address"] for r in rows])
    )
    async with engine.begin() as conn:
        await conn.execute(
            statement.on_conflict_do_update(index_elements=["chain_id", "address"], set_=columns)
        )
        await conn.execute(gone)


async def publish_lane_status(
    engine: AsyncEngine,
    chain_id: int,
    lanes: Callable[[], list[LaneStatus]],
    interval_s: float,
) -> None:
    """Publish `lanes()` every `interval_s` until cancelled."""
    failing = False
    while True:
        try:
            await publish_once(engine, chain_id, lanes())
        except (DBAPIError, OSError, TimeoutError) as exc:
            if not failing:
                log.warning("publishing lane status failed", extra={"error": str(exc)[:300]})
            failing = True
        else:
            failing = False
        await asyncio.sleep(interval_s)
