"""The executor's chain metrics (the `akave_chain_*` definitions in shared/metrics.py), one
series per lane, labelled `key` with the lane's checksummed address (never the key itself).

Two sources, one for each kind of number:
- `ChainMetrics` is the lanes' `LaneObserver` (chain/observer.py): the counters and histograms
  of what happened, counted at the event by the lane.
- `LaneGauges` reads what each lane *is* (in flight, next nonce, balance, paused) from the
  manager's `status()` at scrape time, the same numbers /health publishes: a gauge can never
  disagree with the lane, and the lanes pay nothing for it. A number the lane does not know
  yet (no nonce allocated, no block read) is left out rather than exported as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

from services.executor.chain.records import AlreadyExists, LaneStatus, Reverted
from services.executor.errors import revert_code
from shared import metrics


class ChainMetrics:
    """`LaneObserver` that counts into `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._replacements = metrics.counter(metrics.CHAIN_REPLACEMENTS, registry)
        self._resends = metrics.counter(metrics.CHAIN_RESENDS, registry)
        self._reverts = metrics.counter(metrics.CHAIN_REVERTS, registry)
        self._gas_price = metrics.histogram(metrics.CHAIN_GAS_PRICE, registry)
        self._receipt = metrics.histogram(metrics.CHAIN_RECEIPT, registry)

    def replaced(self, signer: str) -> None:
        self._replacements.labels(signer).inc()

    def resent(self, signer: str) -> None:
        self._resends.labels(signer).inc()

    def mined(self, signer: str, gas_price_wei: int, receipt_s: float | None) -> None:
        self._gas_price.observe(gas_price_wei)
        if receipt_s is not None:
            self._receipt.observe(receipt_s)

    def reverted(self, signer: str, outcome: AlreadyExists | Reverted) -> None:
        self._reverts.labels(signer, revert_code(outcome)).inc()


class LaneGauges(Collector):
    """The lanes' state gauges, read from `status()` at scrape time."""

    def __init__(self, status: Callable[[], list[LaneStatus]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Family]:
        lanes = self._status()
        families = {
            metric: GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
            for metric in (
                metrics.CHAIN_IN_FLIGHT,
                metrics.CHAIN_NEXT_NONCE,
                metrics.CHAIN_BALANCE,
                metrics.CHAIN_LANE_PAUSED,
            )
        }
        for lane in lanes:
            values = {
                metrics.CHAIN_IN_FLIGHT: lane.in_flight,
                metrics.CHAIN_NEXT_NONCE: lane.next_nonce,
                metrics.CHAIN_BALANCE: lane.balance_wei,
                metrics.CHAIN_LANE_PAUSED: int(lane.paused),
            }
            for metric, value in values.items():
                if value is not None:
                    families[metric].add_metric([lane.address], value)
        yield from families.values()
