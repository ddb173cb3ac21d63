"""The projector refuses a read model whose checkpoints are past the end of the log."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from services.projector.runner import ReadModelAhead, refuse_if_ahead, run
from shared.db import make_engine
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import Settings


def test_a_checkpoint_at_or_below_the_end_is_fine() -> None:
    refuse_if_ahead("t", {0: 0, 1: 5, 2: 7}, {0: 0, 1: 5, 2: 9})
    refuse_if_ahead("t", {}, {0: 3})


def test_a_checkpoint_past_the_end_names_the_partition_and_the_remedy() -> None:
    with pytest.raises(ReadModelAhead, match=r"partition 2: checkpoint 3 > end 0.*migrate"):
        refuse_if_ahead("t", {0: 0, 2: 3}, {0: 0, 1: 0, 2: 0})


async def test_the_projector_stops_on_a_read_model_from_another_log(
    stack_settings: Settings,
) -> None:
    """A kept database and a recreated (here: new, empty) topic, as after wiping Kafka's data."""
    await asyncio.to_thread(migrate, stack_settings)
    await ensure_topics(stack_settings)
    engine = make_engine(stack_settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO projector_checkpoints (topic, partition, next_offset)"
                    " VALUES (:topic, 1, 3)"
                ),
                {"topic": stack_settings.bucket_events_topic},
            )
    finally:
        await engine.dispose()
    with pytest.raises(ReadModelAhead, match="partition 1: checkpoint 3 > end 0"):
        await asyncio.wait_for(run(stack_settings, asyncio.Event()), 30)
