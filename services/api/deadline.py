"""A bound on every request: past it the answer is 503 with Retry-After, whatever was slow.

Each dependency call has its own timeout, but a request makes several (pool, lock, reads,
append, projection wait), so their sum could pass 5 s when the API is swamped, e.g. by a
crowd of clients retrying at once after a restart (docs/decisions.md). For a
POST, a 503 means "outcome unknown" as always: the client retries with its Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class Deadline:
    """Pure ASGI middleware: cancel a request that has not started its answer in time."""

    def __init__(self, app: ASGIApp, seconds: float, retry_after_s: int) -> None:
        self.app = app
        self.seconds = seconds
        self.retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answering = False
        deadline = asyncio.timeout(self.seconds)

        async def watched(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start" and not answering:
                answering = True
                deadline.reschedule(None)  # a started answer (e.g. an event stream) runs on
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, watched)
        except TimeoutError:
            if answering:
                raise
            log.warning("request deadline passed", extra={"path": scope.get("path")})
            response = JSONResponse(
                {"detail": "the gateway is busy; try again shortly"},
                status_code=503,
                headers={"Retry-After": self.retry_after},
            )
            await response(scope, receive, send)
