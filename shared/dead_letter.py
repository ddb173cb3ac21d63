"""Parking: a record a consumer cannot read goes to the dead-letter topic, and it moves on."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)

ORIGIN_TOPIC = "dlq.original.topic"
ORIGIN_PARTITION = "dlq.original.partition"
ORIGIN_OFFSET = "dlq.original.offset"
ERROR = "dlq.error"
CONSUMER = "dlq.consumer"


async def park(
    producer: AIOKafkaProducer,
    dead_letter_topic: str,
    record: ConsumerRecord[bytes, bytes],
    error: str,
    consumer: str,
) -> None:
    """Copy the record as it is, with headers naming where it came from and why it was parked."""
    headers = [
        *list(record.headers or ()),
        (ORIGIN_TOPIC, record.topic.encode()),
        (ORIGIN_PARTITION, str(record.partition).encode()),
        (ORIGIN_OFFSET, str(record.offset).encode()),
        (ERROR, error.encode()[:2000]),
        (CONSUMER, consumer.encode()),
    ]
    await producer.send_and_wait(dead_letter_topic, record.value, key=record.key, headers=headers)
    log.warning(
        "parked unreadable record",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "error": error,
            "consumer": consumer,
        },
    )
