"""Read a service's /metrics as {(series name, labels): value}."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series has not appeared yet (as Prometheus would treat a
    counter nobody incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def gateway_series(samples: Samples) -> set[str]:
    """The gateway's own series names in a scrape (the client's `_created` twins left out)."""
    return {
        name for name, _ in samples if name.startswith("akave_") and not name.endswith("_created")
    }
