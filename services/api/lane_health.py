"""What /health says about the signing keys' lanes (`signer_lanes`, published by the executor).

A lane is `paused` when its key cannot pay (its balance is shown), `stale` when its executor
has not published it for CHAIN_LANE_STATUS_STALE_S (stopped, or a standby not yet in
charge), else `ok`. Either makes /health answer 200 with status "degraded: ...": the API
still accepts and records requests and the jobs resume by themselves once the key is funded
or an executor signs again, so a load balancer must not take the API out of rotation for it
(503 is kept for the API's own dependencies being down). Numbers are read at the database's
clock, so the API's and the executor's clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.api.schemas import SignerLaneHealth


def lane_health(rows: Iterable[Any], stale_s: float) -> list[SignerLaneHealth]:
    return [
        SignerLaneHealth(
            chain_id=row.chain_id,
            address=row.address,
            state="stale" if row.age_s > stale_s else "paused" if row.paused else "ok",
            next_nonce=row.next_nonce,
            in_flight=row.in_flight,
            reason=row.reason,
            balance_wei=None if row.balance_wei is None else str(int(row.balance_wei)),
            updated_at=row.updated_at,
            age_s=round(float(row.age_s), 1),
        )
        for row in rows
    ]


def degraded(lanes: list[SignerLaneHealth]) -> list[str]:
    """One phrase per lane that is not ok, for the status line."""
    said = []
    for lane in lanes:
        if lane.state == "paused":
            said.append(f"lane {lane.address} paused (balance {lane.balance_wei} wei)")
        elif lane.state == "stale":
            said.append(f"lane {lane.address} stale ({lane.age_s:g} s since its last update)")
    return said
