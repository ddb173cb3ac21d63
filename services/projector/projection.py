"""Project one fetched batch: apply it to the read model and park what cannot be read or applied.

The live projector (`runner.py`) and a replay's catch-up and swap (`replay/rebuild.py`) both
project through `project`, each inside a transaction of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.projector.batch import UNAPPLICABLE, BatchOutcome, apply_batch
from shared.consume import DeadLetters, Record, unapplicable

log = logging.getLogger(__name__)

# Records fetched for one batch (one transaction) of live projection and of a replay's catch-up.
BATCH_RECORDS = 2000


async def project(
    session: AsyncSession,
    dead_letters: DeadLetters,
    topic: str,
    records: Sequence[Record],
    expected: Mapping[int, int],
) -> BatchOutcome:
    """Apply one batch inside the caller's transaction and park what cannot be read or applied.

    The batch is first applied under a savepoint; when the database refuses a row for good
    (`UNAPPLICABLE`), that is rolled back and the batch applied again event by event, so only
    the event it refuses is parked. Other errors propagate: the caller retries the batch.
    """
    try:
        async with session.begin_nested():
            outcome = await apply_batch(session, topic, records, expected, isolate=False)
    except UNAPPLICABLE as exc:
        log.warning(
            "the database refused a row; applying the batch event by event",
            extra={"error": str(getattr(exc, "orig", exc))[:500]},
        )
        outcome = await apply_batch(session, topic, records, expected, isolate=True)
    await dead_letters.park_all(outcome.batch.malformed)
    for record, error in outcome.unapplicable:
        await dead_letters.park(record, unapplicable(error))
    return outcome
