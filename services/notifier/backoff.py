"""When to try a delivery again, and whether a receiver's answer is worth another try."""

from __future__ import annotations

import random
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"


def verdict(status_code: int) -> Verdict:
    """2xx succeeds; 408, 429 and anything else not 4xx (3xx, 5xx) may heal; other 4xx cannot."""
    if 200 <= status_code < 300:
        return Verdict.SUCCEEDED
    if 400 <= status_code < 500 and status_code not in (408, 429):
        return Verdict.FAILED
    return Verdict.RETRY


def retry_delay(
    failed_attempts: int,
    base_s: float,
    cap_s: float,
    jitter: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the `failed_attempts`-th failure: base * 2^(n-1), at most `cap_s`,
    then shortened by a random fraction of up to `jitter` so receivers are not retried in step."""
    exponent = min(failed_attempts - 1, 62)
    delay = min(cap_s, base_s * 2.0**exponent)
    return delay * (1.0 - jitter * (rng or random).random())


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header (seconds, or an HTTP date) as seconds from `now`; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())
