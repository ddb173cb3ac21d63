"""The topics the gateway creates carry TOPIC_REPLICATION_FACTOR replicas and a
min.insync.replicas of min(2, that factor) unless set (real Kafka, one broker here; the fault
suite's three-broker cluster checks 3 and 2)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.support.topic_layout import layout


@pytest.mark.parametrize(("replicas", "wanted"), [(1, 1), (2, 2), (3, 2), (5, 2)])
def test_min_insync_replicas_defaults_to_two_or_fewer(replicas: int, wanted: int) -> None:
    settings = Settings(_env_file=None, topic_replication_factor=replicas)
    assert settings.min_insync_replicas == wanted


def test_an_explicit_min_insync_replicas_is_kept_within_the_replicas() -> None:
    settings = Settings(_env_file=None, topic_replication_factor=5, topic_min_insync_replicas=3)
    assert settings.min_insync_replicas == 3
    with pytest.raises(ValidationError, match="every write would be refused"):
        Settings(_env_file=None, topic_replication_factor=2, topic_min_insync_replicas=3)


async def test_created_topics_carry_their_replication(base_settings: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = base_settings.model_copy(
        update={
            "bucket_events_topic": f"test-{tag}.bucket-events",
            "dead_letter_topic": f"test-{tag}.dlq",
        }
    )
    await ensure_topics(settings)
    for topic in (settings.bucket_events_topic, settings.dead_letter_topic):
        found = await layout(settings, topic)
        assert found.min_insync_replicas == 1 and found.min_insync_set_on_topic
        assert [len(p.replicas) for p in found.partitions] == [1] * settings.topic_partitions
