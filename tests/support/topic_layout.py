"""How a topic lies on the brokers: each partition's leader, replicas and in-sync replicas,
and the topic's min.insync.replicas, as the brokers answer them (real Kafka)."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.settings import Settings

TOPIC_CONFIG = 1  # DescribeConfigs v1+ config_source: DYNAMIC_TOPIC_CONFIG, set on the topic


@dataclass(frozen=True)
class Placement:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    topic: str
    partitions: tuple[Placement, ...]
    min_insync_replicas: int
    min_insync_set_on_topic: bool  # not the broker's default

    def leader_of(self, partition: int) -> int:
        return next(p.leader for p in self.partitions if p.partition == partition)


async def layout(settings: Settings, topic: str | None = None) -> Layout:
    topic = topic or settings.bucket_events_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        if described["error_code"] != 0:
            raise RuntimeError(f"cannot describe {topic}: error {described['error_code']}")
        placements = tuple(
            sorted(
                (
                    Placement(
                        p["partition"], p["leader"], tuple(p["replicas"]), tuple(sorted(p["isr"]))
                    )
                    for p in described["partitions"]
                ),
                key=lambda p: p.partition,
            )
        )
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        (response,) = await admin.describe_configs([resource])
        # each entry: (name, value, read_only, is_default | config_source (v1+), ...)
        configs = {entry[0]: entry for result in response.resources for entry in result[4]}
    finally:
        await admin.close()
    _, value, _, source, *_ = configs["min.insync.replicas"]
    on_topic = source == TOPIC_CONFIG if response.API_VERSION >= 1 else not source
    return Layout(topic, placements, int(value), on_topic)
