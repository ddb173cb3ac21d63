"""`make run` prints where each service's metrics are, and leaves out what is turned off."""

from __future__ import annotations

from localinfra.dev import metrics_lines
from shared.settings import Settings


def test_make_run_prints_every_metrics_url() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    printed = metrics_lines(settings)
    for url in (
        "http://127.0.0.1:8000/metrics",
        "http://127.0.0.1:9101/metrics",
        "http://127.0.0.1:9102/metrics",
        "http://127.0.0.1:9103/metrics",
    ):
        assert url in printed


def test_a_port_of_0_or_api_metrics_off_is_not_printed() -> None:
    settings = Settings(_env_file=None, api_metrics=False, notifier_metrics_port=0)  # type: ignore[call-arg]
    printed = metrics_lines(settings)
    assert ":8000/metrics" not in printed and ":9103" not in printed
    assert ":9101/metrics" in printed
