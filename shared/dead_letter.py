"""Parking: a record a consumer cannot read goes to the dead-letter topic, and it moves on."""

from __future__ import annotations

import logging

from aiokafka.structs import ConsumerRecord

from shared.kafka import Appender

log = logging.getLogger(__name__)

ORIGIN_TOPIC = "dlq.original.topic"
ORIGIN_PARTITION = "dlq.original.partition"
ORIGIN_OFFSET = "dlq.original.offset"
ERROR = "dlq.error"
CONSUMER = "dlq.consumer"


async def park(
    appender: Appender,
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
    await appender.send(dead_letter_topic, record.value, record.key, headers)
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
