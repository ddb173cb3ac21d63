"""Webhook retry policy: which answers are retried, and how long to wait."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.notifier.backoff import Verdict, retry_after_seconds, retry_delay, verdict


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (200, Verdict.SUCCEEDED),
        (204, Verdict.SUCCEEDED),
        (299, Verdict.SUCCEEDED),
        (301, Verdict.RETRY),
        (400, Verdict.FAILED),
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),
        (410, Verdict.FAILED),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_verdict_per_status_code(code: int, expected: Verdict) -> None:
    assert verdict(code) is expected


def test_delay_doubles_per_failure_without_jitter() -> None:
    assert [retry_delay(n, 5.0, 3600.0, 0.0) for n in range(1, 6)] == [5, 10, 20, 40, 80]


def test_delay_is_capped_even_after_very_many_failures() -> None:
    assert retry_delay(10, 5.0, 60.0, 0.0) == 60.0
    assert retry_delay(10_000, 5.0, 60.0, 0.0) == 60.0


def test_jitter_only_shortens_and_spreads_the_delay() -> None:
    rng = random.Random(7)
    delays = [retry_delay(3, 5.0, 3600.0, 0.2, rng) for _ in range(500)]
    assert all(16.0 <= d <= 20.0 for d in delays)
    assert max(delays) - min(delays) > 3.0


NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sat, 28 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
    ],
)
def test_retry_after_header_in_seconds_or_as_a_date(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header, NOW) == seconds
