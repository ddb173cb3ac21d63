"""What `/health` reports: the database, the log, and how far the projector is behind.

The rule (docs/operations.md): `down` (503) when the database or the log does not answer,
since then the API cannot accept or read jobs; `degraded` (200) when both answer but the
projector is more than HEALTH_MAX_PROJECTOR_LAG records behind the log's end, since then
writes work and reads are late (read-your-writes waits, then 503s one request at a time).
Each signer lane is reported too (`lane_health.py`): a paused or stale lane is `degraded` (200).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from services.api.errors import LogUnavailable
from services.api.lag import behind
from services.api.lane_health import degraded, lane_health
from services.api.log_client import LogClient
from services.api.read_model import ReadModel
from services.api.schemas import Health, SignerLaneHealth


@dataclass(frozen=True)
class Report:
    body: Health
    down: bool


async def health_report(
    event_log: LogClient, reads: ReadModel, max_lag: int, lane_stale_s: float
) -> Report:
    checks = {"database": "ok", "log": "ok", "projector": "unknown"}
    checkpoints: dict[int, int] | None = None
    ends: dict[int, int] | None = None
    lanes: list[SignerLaneHealth] = []
    try:
        checkpoints = await reads.checkpoints()
        lanes = lane_health(await reads.signer_lanes(), lane_stale_s)
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
    else:
        lagging = degraded(lanes)
        if checks["projector"] != "ok":
            lagging.insert(0, "projector " + checks["projector"])
        state = "degraded: " + "; ".join(lagging) if lagging else "ok"
    body = Health(status=state, checks=checks, projector_lag=lag, lanes=lanes)
    return Report(body, bool(down))
