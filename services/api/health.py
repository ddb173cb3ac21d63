"""What `/health` reports: the database, the log, and how far the projector is behind.

The rule (docs/operations.md): `down` (503) when the database or the log does not answer,
since then the API cannot accept or read jobs; `degraded` (200) when both answer but the
projector is more than HEALTH_MAX_PROJECTOR_LAG records behind the log's end, since then
writes work and reads are late (read-your-writes waits, then 503s one request at a time).
Signer lanes are not reported yet: their status table is not on main (see docs/operations.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from services.api.errors import LogUnavailable
from services.api.lag import behind
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from services.api.schemas import Health


@dataclass(frozen=True)
class Report:
    body: Health
    down: bool


async def health_report(event_log: LogClient, reads: ReadModel, max_lag: int) -> Report:
    checks = {"database": "ok", "log": "ok", "projector": "unknown"}
    checkpoints: dict[int, int] | None = None
    ends: dict[int, int] | None = None
    try:
        checkpoints = await reads.checkpoints()
    except Exception:  # any failure means "down" here; the reason is in the logs
        checks["database"] = "down"
    try:
        await event_log.check()
    except LogUnavailable:
        checks["log"] = "down"
    else:
        # The broker answers but maybe not for the topic (yet): then the lag is unknown.
        with contextlib.suppress(LogUnavailable):
            ends = await event_log.end_offsets()
    lag: dict[str, int] | None = None
    if checkpoints is not None and ends is not None:
        lag = {str(p): n for p, n in behind(ends, checkpoints).items()}
        total = sum(lag.values())
        checks["projector"] = "ok" if total <= max_lag else f"behind by {total} records"
    down = [name for name in ("database", "log") if checks[name] != "ok"]
    if down:
        state = "down: " + ", ".join(down)
    elif checks["projector"] != "ok":
        state = "degraded: projector " + checks["projector"]
    else:
        state = "ok"
    return Report(Health(status=state, checks=checks, projector_lag=lag), bool(down))
