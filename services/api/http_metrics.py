"""Prometheus metrics of the API: every answer counted by route template and status and timed,
202s to POST /buckets counted as accepted jobs, all served at GET /metrics.

With several uvicorn workers (`API_WORKERS` > 1) each worker is its own process: the CLI then
points PROMETHEUS_MULTIPROC_DIR at a directory of its own, every worker writes its values there,
and /metrics answers the sum over all workers, whichever worker takes the scrape.
"""

from __future__ import annotations

import os
import time

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"  # no route template: one label value, whatever the path was


class HttpMetrics:
    """Outermost middleware, so it also counts what the protections answer (401, 413, 429...)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self._requests = metrics.counter(metrics.HTTP_REQUESTS, registry)
        self._duration = metrics.histogram(metrics.HTTP_DURATION, registry)
        self._accepted = metrics.counter(metrics.JOBS_ACCEPTED, registry)
        # label children by their values: a dict lookup instead of the client's lock per request
        self._counted: dict[tuple[str, str, int], object] = {}
        self._timed: dict[tuple[str, str], object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raised before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._note(scope, status, time.perf_counter() - started)

    def _note(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        route = getattr(scope.get("route"), "path", UNMATCHED)
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = self._counted[method, route, status] = self._requests.labels(
                method, route, str(status)
            )
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[method, route] = self._duration.labels(method, route)
        counted.inc()  # type: ignore[attr-defined]
        timed.observe(seconds)  # type: ignore[attr-defined]
        if status == 202 and method == "POST" and route == "/buckets":
            self._accepted.inc()


def install(app: FastAPI, settings: Settings) -> None:
    """Count every request (outermost middleware) and answer GET /metrics; nothing when the
    API_METRICS setting is off."""
    if not settings.api_metrics:
        return
    registry = CollectorRegistry()
    app.add_middleware(HttpMetrics, registry=registry)

    @app.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        exposed = registry
        if os.environ.get(MULTIPROC_ENV):
            exposed = CollectorRegistry()
            MultiProcessCollector(exposed)  # type: ignore[no-untyped-call]
        return Response(generate_latest(exposed), media_type=CONTENT_TYPE_LATEST)
