"""One delivery attempt: a signed JSON POST, and what its answer means."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from services.notifier.backoff import Verdict, retry_after_seconds, verdict
from services.notifier.store import Claimed
from shared.errors import TargetRefused, TargetUnresolvable
from shared.settings import Settings
from shared.tracing import tracing_on
from shared.webhook_signing import signed_headers
from shared.webhook_targets import check_target


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # what a 429 or 503 asked for


def make_client(settings: Settings) -> httpx.AsyncClient:
    """Redirects are not followed (a redirect could lead anywhere, the gateway included).
    With tracing on, each POST is a client span and carries its `traceparent` header."""
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_timeout_s),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=settings.notifier_concurrency),
        trust_env=False,
    )
    if tracing_on(settings):
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client)
    return client


async def attempt(client: httpx.AsyncClient, claimed: Claimed, settings: Settings) -> Attempt:
    """POST the delivery once, bounded by WEBHOOK_TIMEOUT_S in total. The response body is
    never read: only its status matters."""
    timeout = settings.webhook_timeout_s
    body = claimed.payload.encode()
    try:
        async with asyncio.timeout(timeout):
            await check_target(claimed.url, settings, timeout)
            headers = signed_headers(claimed.secret, str(claimed.id), int(time.time()), body)
            async with client.stream("POST", claimed.url, content=body, headers=headers) as answer:
                code = answer.status_code
                retry_after = answer.headers.get("retry-after") if code in (429, 503) else None
    except TargetUnresolvable as exc:
        return Attempt(Verdict.RETRY, error=str(exc))
    except TargetRefused as exc:
        return Attempt(Verdict.FAILED, error=f"refused: {exc}")
    except (TimeoutError, httpx.TimeoutException):
        return Attempt(Verdict.RETRY, error=f"no answer within {timeout:g} s")
    except (httpx.HTTPError, OSError) as exc:
        return Attempt(Verdict.RETRY, error=f"{type(exc).__name__}: {exc}"[:500])
    result = verdict(code)
    error = None if result is Verdict.SUCCEEDED else f"receiver answered {code}"
    return Attempt(result, code, error, retry_after_seconds(retry_after, datetime.now(UTC)))
