"""The delivery worker pool: claims due deliveries and sends them, NOTIFIER_CONCURRENCY at a
time, so a slow or failing receiver holds one slot and never the others' deliveries."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier import store
from services.notifier.backoff import Verdict, retry_delay
from services.notifier.sender import attempt
from shared import metrics
from shared.settings import Settings
from shared.tracing import context_from_traceparent, span

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        registry: CollectorRegistry,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._client = client
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        # Longer than any attempt can take, so a live attempt's claim never runs out.
        self._lease_s = settings.webhook_timeout_s * 2 + 1
        self.stats: Counter[str] = Counter()
        self._attempts = metrics.counter(metrics.WEBHOOK_ATTEMPTS, registry)
        self._oldest_due = metrics.gauge(metrics.WEBHOOK_OLDEST_DUE, registry)

    def wake(self) -> None:
        """New deliveries were recorded: look for due work now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()  # before claiming: a wake-up during the claim is kept
                free = self._settings.notifier_concurrency - len(self._inflight)
                claimed = await self._claim(free) if free > 0 else []
                for delivery in claimed:
                    task = asyncio.create_task(self._deliver(delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
                if claimed and len(claimed) == free:
                    continue  # there may be more due work; claim again as slots free up
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {waking, stopping},
                    timeout=self._settings.webhook_poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waking.cancel()
        finally:
            stopping.cancel()
            if self._inflight:  # let attempts in flight finish; each is bounded
                await asyncio.wait(self._inflight)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task crashed", exc_info=task.exception())

    async def _claim(self, free: int) -> list[store.Claimed]:
        try:
            async with self._sessions() as session, session.begin():
                self._oldest_due.set(await store.oldest_due_age_s(session))
                return await store.claim_due(
                    session, free, self._lease_s, self._settings.webhook_max_attempts
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("claiming deliveries failed; retrying", extra={"error": str(exc)[:500]})
            return []

    async def _deliver(self, claimed: store.Claimed) -> None:
        settings = self._settings
        # a span of the job's trace; the POST under it (httpx instrumentation) sends its own
        # traceparent to the receiver
        with span(
            "notifier.deliver",
            context_from_traceparent(claimed.traceparent),
            {
                "akave.delivery_id": str(claimed.id),
                "akave.event_id": claimed.event_id,
                "akave.delivery_attempt": claimed.attempt,
            },
        ) as delivering:
            outcome = await attempt(self._client, claimed, settings)
            delivering.set_attribute("akave.delivery_verdict", outcome.verdict.value)
        status, retry_in = outcome.verdict.value, None
        if outcome.verdict is Verdict.RETRY:
            if claimed.attempt >= settings.webhook_max_attempts:
                status = Verdict.FAILED.value
            else:
                status = "pending"
                retry_in = retry_delay(
                    claimed.attempt,
                    settings.webhook_retry_base_s,
                    settings.webhook_retry_max_s,
                    settings.webhook_retry_jitter,
                )
                if (
                    outcome.retry_after_s is not None
                ):  # the receiver asked: wait that, up to the cap
                    wanted = min(outcome.retry_after_s, settings.webhook_retry_max_s)
                    retry_in = max(retry_in, wanted)
        self.stats[status] += 1
        self._attempts.labels(status).inc()
        log.info(
            "delivery attempt",
            extra={
                "delivery_id": str(claimed.id),
                "webhook_id": str(claimed.subscription_id),
                "event_id": claimed.event_id,
                "attempt": claimed.attempt,
                "status": status,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "retry_in_s": None if retry_in is None else round(retry_in, 3),
            },
        )
        try:
            async with self._sessions() as session, session.begin():
                await store.record_attempt(
                    session, claimed, status, outcome.status_code, outcome.error, retry_in
                )
        except (SQLAlchemyError, OSError) as exc:
            # The claim's lease runs out and the delivery is sent again: at least once.
            log.warning(
                "recording a delivery attempt failed",
                extra={"delivery_id": str(claimed.id), "error": str(exc)[:500]},
            )
