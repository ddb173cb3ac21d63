"""The projector's metrics: job outcomes and stage latencies from the events' own times (it
sees every event once, in a committed batch), batch size and duration, lag and checkpoint age."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from services.projector.batch import BatchOutcome
from shared import metrics
from shared.fold import JobStatus


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._outcomes = metrics.counter(metrics.JOB_OUTCOMES, registry)
        stage = metrics.histogram(metrics.JOB_STAGE, registry)
        self._to_processing = stage.labels("accepted_to_processing")
        self._attempt = stage.labels("attempt_to_outcome")
        self._to_outcome = stage.labels("accepted_to_outcome")
        self._visible = stage.labels("event_to_visible")
        self._records = metrics.histogram(metrics.PROJECTOR_BATCH_RECORDS, registry)
        self._duration = metrics.histogram(metrics.PROJECTOR_BATCH_DURATION, registry)
        self._age = metrics.gauge(metrics.PROJECTOR_CHECKPOINT_AGE, registry)
        self._lag = metrics.gauge(metrics.PROJECTOR_LAG, registry)
        self._folded = -1
        self._moved_at = time.monotonic()
        self._lags: dict[int, int] = {}

    def lags(self) -> dict[int, int]:
        """Records behind the log's end, by partition, as last seen."""
        return dict(self._lags)

    def committed(self, outcome: BatchOutcome, records: int, seconds: float) -> None:
        """One batch is in the database: count what it changed (once: a failed batch is never
        passed here, and a retried one only after its commit)."""
        self._records.observe(records)
        self._duration.observe(seconds)
        now = datetime.now(UTC)
        for before, after, at in outcome.transitions:
            self._visible.observe(max((now - at).total_seconds(), 0.0))
            was = before.status if before is not None else None
            if after.status is JobStatus.PROCESSING and was in (None, JobStatus.QUEUED):
                self._to_processing.observe((at - after.created_at).total_seconds())
            elif after.status.is_terminal and not (was is not None and was.is_terminal):
                self._outcomes.labels(after.status.value, after.error_code or "").inc()
                self._to_outcome.observe((at - after.created_at).total_seconds())
                if before is not None and was is JobStatus.PROCESSING:
                    self._attempt.observe((at - before.updated_at).total_seconds())

    def positions(self, folded: Mapping[int, int], ends: Mapping[int, int | None]) -> None:
        """Where the projector stands against the log's end (the fetched high watermarks)."""
        behind = False
        for partition, end in ends.items():
            if end is None:
                continue
            lag = max(end - folded.get(partition, 0), 0)
            self._lag.labels(str(partition)).set(lag)
            self._lags[partition] = lag
            behind = behind or lag > 0
        now = time.monotonic()
        total = sum(folded.values())
        if total != self._folded or not behind:
            self._folded, self._moved_at = total, now
        self._age.set(now - self._moved_at if behind else 0.0)
