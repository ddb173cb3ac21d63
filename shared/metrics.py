"""Every Prometheus metric the gateway exports, by name, in one place.

Services build their metrics from these definitions (`counter`, `gauge`, `histogram`), and the
alert rules, the Grafana dashboard and docs/operations.md are checked against `ALL` by
tests/observability/test_alert_rules.py, so a rule can never watch a metric nobody exports.

A definition whose `pending` names a component is defined (and documented) but not yet exported:
that component wires it when it lands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

from shared.consume import ConsumeStats

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]

# Seconds: from a few milliseconds (an accept) to many minutes (a congested chain).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    help: str
    service: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    pending: str = ""  # not exported yet: the component that will wire it

    def series(self) -> frozenset[str]:
        """The series names this metric appears under in the exposition format."""
        if self.kind == "counter":
            return frozenset({f"{self.name}_total"})
        if self.kind == "histogram":
            return frozenset(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return frozenset({self.name})


# API (served on the API's own port, at /metrics) ---------------------------------------------
HTTP_REQUESTS = Metric(
    "akave_http_requests",
    "counter",
    "HTTP requests answered, by method, route template and status code",
    "api",
    ("method", "route", "status"),
)
HTTP_DURATION = Metric(
    "akave_http_request_duration_seconds",
    "histogram",
    "time from a request's arrival to the end of its answer, by method and route template",
    "api",
    ("method", "route"),
)
JOBS_ACCEPTED = Metric(
    "akave_jobs_accepted",
    "counter",
    "POST /buckets answered 202 (an idempotent repeat counts again, as its 202 does)",
    "api",
)

# Jobs, from the events' own times (the projector sees every event) ----------------------------
JOB_OUTCOMES = Metric(
    "akave_job_outcomes",
    "counter",
    "jobs that reached completed or failed, by status and error_code (empty when completed)",
    "projector",
    ("status", "error_code"),
)
JOB_STAGE = Metric(
    "akave_job_stage_seconds",
    "histogram",
    "latency of each stage of a job, from event times: accepted_to_processing, "
    "attempt_to_outcome, accepted_to_outcome, and event_to_visible (event time to the "
    "projector's commit into bucket_jobs)",
    "projector",
    ("stage",),
)

# Projector ----------------------------------------------------------------------------------
PROJECTOR_BATCH_RECORDS = Metric(
    "akave_projector_batch_records",
    "histogram",
    "records in each batch the projector committed",
    "projector",
    buckets=BATCH_BUCKETS,
)
PROJECTOR_BATCH_DURATION = Metric(
    "akave_projector_batch_duration_seconds",
    "histogram",
    "time to fold and commit one batch",
    "projector",
)
PROJECTOR_CHECKPOINT_AGE = Metric(
    "akave_projector_checkpoint_age_seconds",
    "gauge",
    "seconds since the checkpoint last moved while records were waiting (0 when caught up)",
    "projector",
)
PROJECTOR_LAG = Metric(
    "akave_projector_lag_records",
    "gauge",
    "records in the log the projector has not folded yet, by partition",
    "projector",
    ("partition",),
)

# Executor -----------------------------------------------------------------------------------
EXECUTOR_IN_FLIGHT = Metric(
    "akave_executor_jobs_in_flight",
    "gauge",
    "jobs this executor has started and not finished",
    "executor",
)
EXECUTOR_STANDBY = Metric(
    "akave_executor_standby",
    "gauge",
    "1 while this executor waits for its key pool's signer locks (a standby), 0 while it signs",
    "executor",
)
EXECUTOR_EVENTS = Metric(
    "akave_executor_events_appended",
    "counter",
    "events the executor appended to the log, by type",
    "executor",
    ("type",),
)
EXECUTOR_SNAPSHOTS = Metric(
    "akave_executor_snapshots",
    "counter",
    "partition snapshots: written, refused (unreadable, another version, ahead of the log: "
    "folded from offset 0 instead) or failed (not written; the next one retries)",
    "executor",
    ("outcome",),
)
EXECUTOR_SNAPSHOT_POSITION = Metric(
    "akave_executor_snapshot_position",
    "gauge",
    "the log position of the newest snapshot this executor wrote or restored, by partition",
    "executor",
    ("partition",),
)

# Notifier -----------------------------------------------------------------------------------
WEBHOOK_ATTEMPTS = Metric(
    "akave_webhook_delivery_attempts",
    "counter",
    "webhook delivery attempts, by what they left the delivery as: succeeded, pending (to be "
    "retried) or failed (given up)",
    "notifier",
    ("status",),
)
WEBHOOK_OLDEST_DUE = Metric(
    "akave_webhook_oldest_due_age_seconds",
    "gauge",
    "how long the oldest due delivery has been waiting for its attempt (0 when none is due)",
    "notifier",
)

# Consumers (the shared consume component's counters) ------------------------------------------
CONSUMER_RECORDS_READ = Metric(
    "akave_consumer_records_read",
    "counter",
    "records a consumer read from the log, by consumer",
    "executor,projector,notifier",
    ("consumer",),
)
CONSUMER_UNKNOWN_SKIPPED = Metric(
    "akave_consumer_unknown_skipped",
    "counter",
    "readable events of a type the consumer does not know, skipped, by consumer",
    "executor,projector,notifier",
    ("consumer",),
)
CONSUMER_PARKED = Metric(
    "akave_consumer_parked",
    "counter",
    "records parked on the dead-letter topic, by consumer",
    "executor,projector,notifier",
    ("consumer",),
)
CONSUMER_LAG = Metric(
    "akave_consumer_lag_records",
    "gauge",
    "records between a consumer's committed position and the log's end, by consumer and partition",
    "executor,projector,notifier",
    ("consumer", "partition"),
)

# Chain (the transaction manager's lanes, one per signing key; `key` is the lane's checksummed
# address; services/executor/chain_metrics.py) ---------------------------------------------------
CHAIN_IN_FLIGHT = Metric(
    "akave_chain_in_flight",
    "gauge",
    "transactions the lane follows (signed, not yet final), by signing key (address)",
    "executor",
    ("key",),
)
CHAIN_NEXT_NONCE = Metric(
    "akave_chain_next_nonce",
    "gauge",
    "the next nonce the lane will sign with, by key",
    "executor",
    ("key",),
)
CHAIN_BALANCE = Metric(
    "akave_chain_balance_wei",
    "gauge",
    "the signing key's balance, by key",
    "executor",
    ("key",),
)
CHAIN_LANE_PAUSED = Metric(
    "akave_chain_lane_paused",
    "gauge",
    "1 while a lane signs nothing new because its key cannot pay, by key",
    "executor",
    ("key",),
)
CHAIN_GAS_PRICE = Metric(
    "akave_chain_gas_price_paid_wei",
    "histogram",
    "effective gas price of each final transaction (creates and gap fillers)",
    "executor",
    buckets=(1e8, 1e9, 2e9, 5e9, 1e10, 2e10, 5e10, 1e11, 5e11),
)
CHAIN_REPLACEMENTS = Metric(
    "akave_chain_replacements",
    "counter",
    "stuck transactions replaced at the same nonce with bumped fees, by key",
    "executor",
    ("key",),
)
CHAIN_RESENDS = Metric(
    "akave_chain_resends",
    "counter",
    "signed bytes the node had accepted, broadcast again unchanged (gone from the mempool, "
    "removed by a reorg, or fees at the cap), by key",
    "executor",
    ("key",),
)
CHAIN_REVERTS = Metric(
    "akave_chain_reverts",
    "counter",
    "final transactions whose receipt reverted, by key and error_code",
    "executor",
    ("key", "error_code"),
)
CHAIN_RECEIPT = Metric(
    "akave_chain_receipt_seconds",
    "histogram",
    "time from a transaction's first broadcast by this executor to its receipt",
    "executor",
)

ALL: tuple[Metric, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Metric))


def exported_series() -> frozenset[str]:
    """Every series name a service exports today (pending metrics excluded)."""
    return frozenset(s for m in ALL if not m.pending for s in m.series())


def defined_series() -> frozenset[str]:
    """Every series name defined here, exported or pending."""
    return frozenset(s for m in ALL for s in m.series())


def counter(metric: Metric, registry: CollectorRegistry | None) -> Counter:
    assert metric.kind == "counter", metric
    return Counter(metric.name, metric.help, metric.labels, registry=registry)


def gauge(
    metric: Metric, registry: CollectorRegistry | None, *, multiprocess_mode: str = "all"
) -> Gauge:
    assert metric.kind == "gauge", metric
    return Gauge(
        metric.name,
        metric.help,
        metric.labels,
        registry=registry,
        multiprocess_mode=multiprocess_mode,  # type: ignore[arg-type]
    )


def histogram(metric: Metric, registry: CollectorRegistry | None) -> Histogram:
    assert metric.kind == "histogram", metric
    return Histogram(
        metric.name, metric.help, metric.labels, registry=registry, buckets=metric.buckets
    )


class ConsumeCollector(Collector):
    """The shared consume component's counters (`ConsumeStats`) and the consumer's lag, read at
    scrape time: the consuming loop pays nothing for them."""

    def __init__(
        self,
        consumer: str,
        stats: Callable[[], ConsumeStats],
        lag: Callable[[], Mapping[int, int]],
    ) -> None:
        self._consumer = consumer
        self._stats = stats
        self._lag = lag

    def collect(self) -> Iterator[Family]:
        stats = self._stats()
        for metric, count in (
            (CONSUMER_RECORDS_READ, stats.records_read),
            (CONSUMER_UNKNOWN_SKIPPED, stats.unknown_skipped),
            (CONSUMER_PARKED, stats.parked),
        ):
            family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
            family.add_metric([self._consumer], count)
            yield family
        lag = GaugeMetricFamily(CONSUMER_LAG.name, CONSUMER_LAG.help, labels=CONSUMER_LAG.labels)
        for partition, behind in sorted(dict(self._lag()).items()):
            lag.add_metric([self._consumer, str(partition)], max(behind, 0))
        yield lag


def serve(registry: CollectorRegistry, host: str, port: int, service: str) -> Callable[[], None]:
    """Serve `registry` at http://host:port/metrics from a thread; returns the function that
    stops it. Port 0 means off. A port already taken (a second instance of the service on one
    host) is logged and skipped: metrics are never a reason not to run."""
    if port == 0:
        return lambda: None
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        log.warning(
            "metrics port unavailable; serving no metrics",
            extra={"service": service, "port": port, "error": str(exc)},
        )
        return lambda: None
    log.info("metrics served", extra={"service": service, "url": f"http://{host}:{port}/metrics"})
    return lambda: _stop(server, thread)


def _stop(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(5)
