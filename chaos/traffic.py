"""Traffic against the real API: the load (N bucket requests) and the prober, both recorded.

Every HTTP exchange becomes an `Answer` (status or error, latency, Retry-After) in one
`Recorder`, so the checks can ask afterwards what the API said during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import httpx

CLIENT_TIMEOUT_S = 10.0  # an answer slower than this counts as a hang (no answer at all)
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the request was sent
    source: str  # "load" or "probe"
    method: str
    path: str
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    latency: float
    retry_after: str | None = None
    error: str | None = None


@dataclass
class Recorder:
    answers: list[Answer] = field(default_factory=list)

    async def request(
        self, client: httpx.AsyncClient, source: str, method: str, path: str, **kw: object
    ) -> tuple[Answer, httpx.Response | None]:
        started = time.monotonic()
        response: httpx.Response | None = None
        error: str | None = None
        try:
            response = await client.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        answer = Answer(
            at=started,
            source=source,
            method=method,
            path=path.split("/jobs/")[0] + ("/jobs/{id}" if "/jobs/" in path else ""),
            status=response.status_code if response is not None else None,
            latency=time.monotonic() - started,
            retry_after=response.headers.get("retry-after") if response is not None else None,
            error=error,
        )
        self.answers.append(answer)
        return answer, response


def new_client(base_url: str) -> httpx.AsyncClient:
    # No pool limit: each waiting submission is its own client, as real clients would be.
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends them, so a request
    # never races the server closing its connection (a client artifact, not an API fault).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=50, keepalive_expiry=2)
    return httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S, limits=limits)


async def submit(
    client: httpx.AsyncClient, recorder: Recorder, source: str, name: str, deadline: float
) -> str | None:
    """POST one bucket until it is accepted, as a careful client does: the name is the
    Idempotency-Key, so a retry after an unknown outcome (503, no answer) names the same job.
    Returns the job id, or None if the deadline passed first."""
    backoff = 0.5
    while time.monotonic() < deadline:
        answer, response = await recorder.request(
            client,
            source,
            "POST",
            "/buckets",
            json={"bucket_name": name},
            headers={"Idempotency-Key": name},
        )
        if answer.status == 202 and response is not None:
            return str(response.json()["job_id"])
        if answer.status == 503 and answer.retry_after:  # with jitter, as clients should
            await asyncio.sleep(
                min(float(answer.retry_after), MAX_BACKOFF_S) * (1 + random.random())
            )
        else:  # no answer, or an answer a client cannot act on: back off and try again
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_BACKOFF_S)
    return None


class Load:
    """N distinct names, one new request every 1/rate seconds, each retried until accepted."""

    def __init__(self, base_url: str, names: list[str], rate: float, recorder: Recorder) -> None:
        self.base_url = base_url
        self.names = names
        self.rate = rate
        self.recorder = recorder
        self.accepted: dict[str, str] = {}  # bucket name -> job id
        self.never_accepted: list[str] = []

    async def run(self, give_up_after: float) -> None:
        async with new_client(self.base_url) as client:
            started = time.monotonic()
            deadline = started + give_up_after
            tasks = []
            for i, name in enumerate(self.names):
                await asyncio.sleep(max(0.0, started + i / self.rate - time.monotonic()))
                tasks.append(asyncio.create_task(self._one(client, name, deadline)))
            await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient, name: str, deadline: float) -> None:
        job_id = await submit(client, self.recorder, "load", name, deadline)
        if job_id is None:
            self.never_accepted.append(name)
        else:
            self.accepted[name] = job_id


class Prober:
    """Every `interval` s one request in turn: GET /health, GET a known job, POST a bucket.

    Its POSTs are jobs too (retried under their key like the load's), so they are counted."""

    def __init__(self, base_url: str, tag: str, load: Load, recorder: Recorder) -> None:
        self.base_url = base_url
        self.tag = tag
        self.load = load
        self.recorder = recorder
        self.accepted: dict[str, str] = {}
        self._pending: str | None = None
        self._count = 0

    async def run(self, stop: asyncio.Event, interval: float = 0.2) -> None:
        async with new_client(self.base_url) as client:
            turn = 0
            while not stop.is_set():
                kind = turn % 3
                turn += 1
                if kind == 0:
                    await self.recorder.request(client, "probe", "GET", "/health")
                elif kind == 1:
                    known = list(self.load.accepted.values())
                    if known:
                        path = f"/buckets/jobs/{random.choice(known)}"
                        await self.recorder.request(client, "probe", "GET", path)
                else:
                    await self._post(client)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
            # A probe bucket whose outcome is unknown is retried under its key until accepted.
            if self._pending is not None:
                job_id = await submit(
                    client, self.recorder, "probe", self._pending, time.monotonic() + 120
                )
                if job_id is not None:
                    self.accepted[self._pending] = job_id

    async def _post(self, client: httpx.AsyncClient) -> None:
        if self._pending is None:
            self._count += 1
            self._pending = f"{self.tag}-probe-{self._count:04d}"
        name = self._pending
        answer, response = await self.recorder.request(
            client,
            "probe",
            "POST",
            "/buckets",
            json={"bucket_name": name},
            headers={"Idempotency-Key": name},
        )
        if answer.status == 202 and response is not None:
            self.accepted[name] = str(response.json()["job_id"])
            self._pending = None
