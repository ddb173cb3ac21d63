"""The notifier process: intake (log -> deliveries) and the dispatcher (deliveries -> HTTP),
side by side. Start more processes to share both: the consumer group splits the partitions,
`SKIP LOCKED` claims split the deliveries."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from services.notifier.dispatcher import Dispatcher
from services.notifier.intake import Intake
from services.notifier.sender import make_client
from shared import metrics
from shared.consume import ConsumerName
from shared.db import make_engine, make_sessionmaker
from shared.kafka import Appender, ensure_topics, make_consumer
from shared.settings import Settings
from shared.webhook_targets import parse_deny_list

log = logging.getLogger(__name__)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    parse_deny_list(settings.webhook_deny_targets)
    # httpx logs every request with its URL; ours log the delivery without it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    await ensure_topics(settings)
    engine = make_engine(settings, pool_size=4)
    sessions = make_sessionmaker(engine)
    appender = Appender(settings)
    client = make_client(settings)
    consumer = make_consumer(
        settings,
        settings.bucket_events_topic,
        group_id=settings.notifier_group_id,
        session_timeout_ms=settings.notifier_session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.notifier_session_timeout_ms // 3),
    )
    try:
        registry = CollectorRegistry()
        dispatcher = Dispatcher(settings, sessions, client, registry)
        intake = Intake(settings, consumer, appender, sessions, dispatcher.wake)
        registry.register(
            metrics.ConsumeCollector(ConsumerName.NOTIFIER, lambda: intake.stats, intake.lag)
        )
        await consumer.start()
        stop_metrics = metrics.serve(
            registry, settings.metrics_host, settings.notifier_metrics_port, "notifier"
        )
        try:
            log.info("notifier started", extra={"group": settings.notifier_group_id})
            # One half failing stops the other; the service then restarts both.
            halt = asyncio.Event()
            watch = asyncio.create_task(stop.wait())
            watch.add_done_callback(lambda _: halt.set())
            tasks = [
                asyncio.create_task(intake.run(halt), name="intake"),
                asyncio.create_task(dispatcher.run(halt), name="dispatcher"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                halt.set()
                watch.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()
        finally:
            stop_metrics()
            await consumer.stop()
        log.info(
            "notifier stopped",
            extra={**intake.stats.as_dict(), "deliveries": intake.deliveries, **dispatcher.stats},
        )
    finally:
        await client.aclose()
        await appender.stop()
        await engine.dispose()
