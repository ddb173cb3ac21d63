"""The event topic's partition count is never changed, and another count than TOPIC_PARTITIONS
is refused by `akave-gateway topics` with the reason (real Kafka)."""

from __future__ import annotations

import subprocess
import sys
import uuid

from shared.kafka import ensure_topics, partition_count_problem
from shared.settings import Settings
from tests.support.stack import REPO, settings_env


def fresh(base: Settings, partitions: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            "bucket_events_topic": f"test-{tag}.bucket-events",
            "dead_letter_topic": f"test-{tag}.dlq",
            "topic_partitions": partitions,
        }
    )


async def test_an_existing_topic_keeps_its_count_and_another_count_is_a_problem(
    base_settings: Settings,
) -> None:
    settings = fresh(base_settings, 3)
    assert await ensure_topics(settings) == 3
    wider = settings.model_copy(update={"topic_partitions": 5})
    assert await ensure_topics(wider) == 3  # not grown
    problem = partition_count_problem(wider, 3)
    assert problem is not None and "has 3 partitions but TOPIC_PARTITIONS is 5" in problem
    assert partition_count_problem(settings, 3) is None


def test_the_topics_command_refuses_another_count_with_the_reason(
    base_settings: Settings,
) -> None:
    settings = fresh(base_settings, 2)

    def topics(partitions: int) -> subprocess.CompletedProcess[str]:
        env = settings_env(settings.model_copy(update={"topic_partitions": partitions}))
        return subprocess.run(
            [sys.executable, "-m", "cli", "topics"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert topics(2).returncode == 0
    refused = topics(4)
    assert refused.returncode == 1
    assert "refusing: topic" in refused.stderr and "moves names to" in refused.stderr
