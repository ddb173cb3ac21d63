"""Is the dev chain behind the log? A completed job whose bucket the chain does not have.

anvil keeps its state in a file written every few seconds and on a clean stop, so after a hard
kill (of anvil, or of the machine) the chain can lack the last buckets the log and the read
model call completed. `make run` checks the most recently completed jobs at start-up (the ones
a lost interval would hold) and warns with the remedy: it never "repairs" the log or the chain.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from services.executor.backends.evm import EvmBackend
from shared.db import make_engine
from shared.fold import JobStatus
from shared.models import BucketJob
from shared.settings import Settings

RECENT = 200  # the newest completed jobs to look for on the chain


async def missing_on_chain(settings: Settings, recent: int = RECENT) -> list[str]:
    """Names of the newest completed buckets (up to `recent`) that no key of ours has on the
    chain (the evm backend's view: under every key of the pool)."""
    engine = make_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(BucketJob.bucket_name)
                .where(BucketJob.status == JobStatus.COMPLETED.value)
                .order_by(BucketJob.completed_at.desc())
                .limit(recent)
            )
            names = [row[0] for row in result]
    finally:
        await engine.dispose()
    if not names:
        return []
    backend = await EvmBackend.open(settings)  # views only: nothing is signed
    try:
        found = await asyncio.gather(*(backend.view_bucket(name) for name in names))
    finally:
        await backend.close()
    return [name for name, bucket in zip(names, found, strict=True) if bucket is None]


def warning(missing: list[str], chain_dir: str) -> str:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return (
        f"WARNING: the dev chain is BEHIND the log: {len(missing)} bucket(s) the log calls "
        f"completed are not on the chain ({shown}). anvil saves its state every second and on a "
        "clean stop, so a hard kill lost the last blocks. Those buckets do not exist on this "
        "chain. To start consistent, stop `make run` and delete the chain state together with "
        f"the gateway's data: {chain_dir}, the Kafka topic (.local/kafka/dev/) and the database "
        "(drop it, or point DATABASE_URL at a new one)."
    )


def check(settings: Settings) -> str | None:
    """The warning to print, or None when the chain has every recent completed bucket."""
    missing = asyncio.run(missing_on_chain(settings))
    return warning(missing, ".local/anvil/dev/") if missing else None
