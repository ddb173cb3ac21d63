"""Publishing lane status to `signer_lanes` (real Postgres): the fence holder's rows are the
pool's lanes; a key that left the pool loses its row, on the same chain only."""

from __future__ import annotations

from sqlalchemy import delete, select

from services.executor.chain.records import LaneStatus
from services.executor.lane_status import publish_once
from shared.db import make_engine
from shared.models import SignerLane
from shared.settings import Settings

CHAIN = 31_337_000 + 7  # a chain id of this test's own, so other tests' rows are untouched
OTHER_CHAIN = CHAIN + 1


def lane(address: str, in_flight: int = 0) -> LaneStatus:
    return LaneStatus(address, in_flight, next_nonce=5, paused=False, balance_wei=10**18)


async def test_a_key_that_left_the_pool_loses_its_row_and_other_chains_keep_theirs(
    base_settings: Settings,
) -> None:
    engine = make_engine(base_settings)
    try:
        await publish_once(engine, OTHER_CHAIN, [lane("0xC")])
        await publish_once(engine, CHAIN, [lane("0xA"), lane("0xB", in_flight=2)])
        await publish_once(engine, CHAIN, [lane("0xA", in_flight=1)])
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(SignerLane.chain_id, SignerLane.address, SignerLane.in_flight)
                    .where(SignerLane.chain_id.in_([CHAIN, OTHER_CHAIN]))
                    .order_by(SignerLane.chain_id, SignerLane.address)
                )
            ).all()
        assert [tuple(r) for r in rows] == [(CHAIN, "0xA", 1), (OTHER_CHAIN, "0xC", 0)]
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                delete(SignerLane).where(SignerLane.chain_id.in_([CHAIN, OTHER_CHAIN]))
            )
        await engine.dispose()
