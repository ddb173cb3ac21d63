"""Live job status: `GET /buckets/jobs/{id}/events` as Server-Sent Events.

The read model is watched by polling, because the API may not ask the projector for more: one
`JobWatch` per API process polls `bucket_jobs` every `LIVE_POLL_INTERVAL_S` with one query for
all the jobs that open streams follow, and hands each change to those streams. A stream sends
the job's state when it opens and at every change (event name = status, data = the job as
`GET /buckets/jobs/{id}` shows it), and ends after a terminal state. States that come and go
between two polls are not seen; the last one always is.

The operator console's live list is a stream of the same watch: a follower of every job
(`follow_changes`). While one is open, the same one query also returns the latest
`FEED_LIMIT` jobs whose `updated_at` passed the feed's watermark (minus `FEED_OVERLAP`, for
events projected a little out of time order); each state is handed on once.

While Postgres is down the watch keeps retrying (logged once per outage) and the streams keep
their heartbeats; a stream ends at the latest after `LIVE_MAX_STREAM_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.responses import Response

from services.api.errors import TooManyStreams
from services.api.read_model import ReadModel
from services.api.schemas import Job
from shared.settings import Settings

log = logging.getLogger(__name__)
# The live list of changes: at most this many changed jobs per poll, and how far back of the
# newest change seen each poll looks again.
FEED_LIMIT = 200
FEED_OVERLAP = timedelta(seconds=5)


def event_id(job: Job) -> str:
    """Names one state of a job: its status and the time of the event that made it."""
    return f"{job.status.value}@{job.updated_at.isoformat()}"


def as_event(job: Job) -> ServerSentEvent:
    return ServerSentEvent(data=job.model_dump_json(), event=job.status.value, id=event_id(job))


@dataclass(eq=False)
class Follower:
    """One open stream's registration: the changes of one job, in order (or, with no
    `job_id`, of every job: the console's live list)."""

    job_id: uuid.UUID | None
    changes: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)


class JobWatch:
    """One poller per process for every followed job: one query per interval, whatever the
    number of streams, and none while no stream is open."""

    def __init__(self, reads: ReadModel, interval_s: float, max_streams: int) -> None:
        self._reads = reads
        self._interval = interval_s
        self._max = max_streams
        self._followers: set[Follower] = set()
        self._last: dict[uuid.UUID, Job] = {}
        self._feed_since: datetime | None = None  # watermark of the live list
        self._feed_seen: dict[uuid.UUID, Job] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.polls = 0  # queries run, for tests and the curious

    @property
    def open_streams(self) -> int:
        return len(self._followers)

    def follow(self, job: Job) -> Follower:
        """Register a stream for `job`, or raise `TooManyStreams`."""
        follower = Follower(job.job_id)
        self._add(follower)
        self._last.setdefault(job.job_id, job)
        return follower

    def follow_changes(self) -> Follower:
        """Register a stream of every job's changes from now on, or raise `TooManyStreams`."""
        follower = Follower(None)
        if self._feed_since is None:
            self._feed_since = datetime.now(UTC) - FEED_OVERLAP
        self._add(follower)
        return follower

    def _add(self, follower: Follower) -> None:
        if len(self._followers) >= self._max:
            raise TooManyStreams(f"{self._max} event streams are open")
        self._followers.add(follower)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="job-watch")

    def unfollow(self, follower: Follower) -> None:
        self._followers.discard(follower)
        if follower.job_id is None:
            if not any(f.job_id is None for f in self._followers):
                self._feed_since = None
                self._feed_seen.clear()
        elif not any(f.job_id == follower.job_id for f in self._followers):
            self._last.pop(follower.job_id, None)

    async def close(self) -> None:
        self._followers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while self._followers:
            await asyncio.sleep(self._interval)
            if not self._followers:
                break
            ids = {f.job_id for f in self._followers if f.job_id is not None}
            since = self._feed_since
            try:
                self.polls += 1
                jobs = await self._reads.watched(ids, since, FEED_LIMIT)  # bounded: DB_TIMEOUT_S
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                if not self._failing:
                    log.warning("job watch cannot read the database", extra={"error": repr(exc)})
                self._failing = True
                continue
            except Exception:  # a bug must not silence every stream of the process
                log.exception("job watch poll failed")
                continue
            if self._failing:
                log.info("job watch reads the database again")
                self._failing = False
            for job in jobs:
                if job.job_id in ids and self._last.get(job.job_id) != job:
                    self._last[job.job_id] = job
                    for follower in self._followers:
                        if follower.job_id == job.job_id:
                            follower.changes.put_nowait(job)
            if since is not None and self._feed_since is not None:
                self._hand_on_changes(jobs, since)

    def _hand_on_changes(self, jobs: list[Job], since: datetime) -> None:
        changed = [j for j in jobs if j.updated_at > since and self._feed_seen.get(j.job_id) != j]
        for job in sorted(changed, key=lambda j: j.updated_at):
            self._feed_seen[job.job_id] = job
            for follower in self._followers:
                if follower.job_id is None:
                    follower.changes.put_nowait(job)
        newest = max((j.updated_at for j in jobs if j.updated_at > since), default=None)
        if newest is not None:
            self._feed_since = max(since, newest - FEED_OVERLAP)
            watermark = self._feed_since
            self._feed_seen = {k: j for k, j in self._feed_seen.items() if j.updated_at > watermark}


async def _events(
    watch: JobWatch, follower: Follower, job: Job, skip_first: bool, lifetime_s: float
) -> AsyncIterator[ServerSentEvent]:
    try:
        if not skip_first:
            yield as_event(job)
        if job.status.is_terminal:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + lifetime_s
        last = job
        while (remaining := until - loop.time()) > 0:
            try:
                change = await asyncio.wait_for(follower.changes.get(), remaining)
            except TimeoutError:
                return
            if change == last or change.updated_at < last.updated_at:
                continue
            last = change
            yield as_event(change)
            if change.status.is_terminal:
                return
    finally:
        watch.unfollow(follower)


def stream(watch: JobWatch, job: Job, last_event_id: str | None, settings: Settings) -> Response:
    """The SSE answer for `job`, which the caller found; raises `TooManyStreams`.

    A client that already saw the terminal state (its `Last-Event-ID`) gets 204, which tells
    an EventSource to stop reconnecting.
    """
    seen = last_event_id == event_id(job)
    if seen and job.status.is_terminal:
        return Response(status_code=204)
    follower = watch.follow(job)
    return EventSourceResponse(
        _events(watch, follower, job, seen, settings.live_max_stream_s),
        ping=settings.live_heartbeat_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(watch.unfollow, follower),  # also when it never started
    )


async def _changes(
    watch: JobWatch, follower: Follower, lifetime_s: float
) -> AsyncIterator[ServerSentEvent]:
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + lifetime_s
        while (remaining := until - loop.time()) > 0:
            try:
                change = await asyncio.wait_for(follower.changes.get(), remaining)
            except TimeoutError:
                return
            yield ServerSentEvent(data=change.model_dump_json(), event="job")
    finally:
        watch.unfollow(follower)


def changes_stream(watch: JobWatch, settings: Settings) -> Response:
    """The SSE answer of every job's changes from now on (event `job`, data = the job);
    raises `TooManyStreams`."""
    follower = watch.follow_changes()
    return EventSourceResponse(
        _changes(watch, follower, settings.live_max_stream_s),
        ping=settings.live_heartbeat_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(watch.unfollow, follower),
    )
