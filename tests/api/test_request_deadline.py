"""Every request is answered within REQUEST_DEADLINE_S: a slow one becomes 503 + Retry-After."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from services.api.deadline import Deadline


def _app(delay: float) -> FastAPI:
    app = FastAPI()

    @app.get("/work")
    async def work() -> dict[str, str]:
        await asyncio.sleep(delay)
        return {"done": "yes"}

    app.add_middleware(Deadline, seconds=0.3, retry_after_s=7)
    return app


async def _get(app: FastAPI) -> tuple[httpx.Response, float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        started = time.monotonic()
        response = await client.get("/work")
        return response, time.monotonic() - started


async def test_a_request_past_the_deadline_gets_503_with_retry_after_in_time() -> None:
    response, took = await _get(_app(delay=5))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert took < 1.0


async def test_a_request_within_the_deadline_is_untouched() -> None:
    response, _ = await _get(_app(delay=0.01))
    assert response.status_code == 200 and response.json() == {"done": "yes"}
