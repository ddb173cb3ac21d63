"""The console's pages and its two writes (retry a job, redrive a parked record).

Each route reads through the same functions as the API and the CLI (`ReadModel`, `retries`,
`live`, `shared/parked.py`, `lag`, `job_history`) and renders one template.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api import lag, live, retries
from services.api.console import session
from services.api.deps import Config, EventLog, Keys, Reads, Watch
from services.api.errors import BucketAlreadyCreated, JobNotFound, LogUnavailable, NotRetryable
from services.api.job_history import job_history
from services.api.lane_health import lane_health
from services.api.read_your_writes import find_job
from shared import parked
from shared.events import EventData
from shared.fold import JobStatus

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _details(data: EventData) -> str:
    """An event's own fields, without those the job page shows once."""
    return data.model_dump_json(exclude={"type", "job_id", "bucket_name"})


templates.env.filters["details"] = _details


async def writable(request: Request, keys: Keys) -> bool:
    return session.can_write(request, keys)


CanWrite = Annotated[bool, Depends(writable)]


def _page(
    request: Request, name: str, can_write: bool, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context["can_write"] = can_write
    context["keys_on"] = request.app.state.keys.enabled
    return templates.TemplateResponse(request, name, context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
async def overview(
    request: Request, reads: Reads, event_log: EventLog, config: Config, can_write: CanWrite
) -> HTMLResponse:
    limit = config.console_list_limit
    lags: dict[str, dict[int, int] | None] | None = None
    try:
        ends = await event_log.end_offsets()
        lags = {"projector": lag.behind(ends, await reads.checkpoints())}
        for group in (config.executor_group_id, config.notifier_group_id):
            lags[group] = await lag.group_lag(config, group, ends)
    except LogUnavailable:
        pass  # the page says the log does not answer
    return _page(
        request,
        "overview.html",
        can_write,
        counts=await reads.status_counts(),
        statuses=[s.value for s in JobStatus],
        failures=await reads.latest(limit, JobStatus.FAILED),
        recent=await reads.latest(limit),
        lags=lags,
        lanes=lane_health(await reads.signer_lanes(), config.chain_lane_status_stale_s),
    )


@router.get("/search", response_class=HTMLResponse, response_model=None)
async def search(
    request: Request,
    reads: Reads,
    config: Config,
    can_write: CanWrite,
    q: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    wanted = q.strip()
    try:
        return RedirectResponse(f"/console/jobs/{uuid.UUID(wanted)}", status_code=303)
    except ValueError:
        pass  # not a job id: a bucket name
    jobs = await reads.jobs_named(wanted, config.console_list_limit) if wanted else []
    return _page(request, "search.html", can_write, q=wanted, jobs=jobs)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request,
    job_id: uuid.UUID,
    reads: Reads,
    event_log: EventLog,
    config: Config,
    can_write: CanWrite,
) -> HTMLResponse:
    job = await find_job(event_log, reads, job_id, config.read_your_writes_timeout_s)
    if job is None:
        return _page(request, "error.html", can_write, 404, message=f"no job {job_id}")
    job = await retries.with_retried_by(reads, job)
    try:
        history = await job_history(event_log, config, job)
    except LogUnavailable:
        history = None
    refusal = retries.refusal(job)
    return _page(
        request,
        "job.html",
        can_write,
        job=job,
        history=history,
        retry_refusal=None if refusal is None else str(refusal),
    )


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: uuid.UUID,
    reads: Reads,
    event_log: EventLog,
    watch: Watch,
    config: Config,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """The job's states as `GET /buckets/jobs/{id}/events` streams them (the console's key)."""
    job = await find_job(event_log, reads, job_id, config.read_your_writes_timeout_s)
    if job is None:
        return Response(status_code=404)
    return live.stream(watch, job, last_event_id, config)


@router.get("/changes")
async def changes(watch: Watch, config: Config) -> Response:
    """Every job's changes from now on, as Server-Sent Events (event `job`)."""
    return live.changes_stream(watch, config)


@router.post("/jobs/{job_id}/retry", response_model=None)
async def retry(
    request: Request,
    job_id: uuid.UUID,
    reads: Reads,
    event_log: EventLog,
    config: Config,
    can_write: CanWrite,
) -> Response:
    try:
        done = await retries.retry_job(
            event_log, reads, job_id, config.idempotency_projection_wait_s
        )
    except NotRetryable as exc:
        return _page(request, "error.html", can_write, exc.status_code, message=str(exc))
    except BucketAlreadyCreated as exc:
        return _page(request, "error.html", can_write, 409, message=str(exc))
    except JobNotFound as exc:
        return _page(request, "error.html", can_write, 404, message=str(exc))
    return RedirectResponse(f"/console/jobs/{done.job_id}", status_code=303)


@router.get("/parked", response_class=HTMLResponse)
async def parked_records(request: Request, config: Config, can_write: CanWrite) -> HTMLResponse:
    try:
        entries = await parked.read_parked(config)
    except parked.ParkedError as exc:
        return _page(request, "error.html", can_write, 503, message=str(exc))
    return _page(request, "parked.html", can_write, entries=[e.as_json() for e in entries])


@router.post("/parked/redrive", response_model=None)
async def redrive(request: Request, config: Config, can_write: CanWrite) -> Response:
    wanted = (await session.form_fields(request)).get("id", "")
    try:
        chosen = parked.select(await parked.read_parked(config), [wanted], everything=False)
        await parked.redrive(config, chosen, dry_run=False)
    except parked.ParkedError as exc:
        return _page(request, "error.html", can_write, 422, message=str(exc))
    return RedirectResponse("/console/parked", status_code=303)


@router.get("/login", response_class=HTMLResponse, response_model=None)
async def login_form(request: Request, keys: Keys) -> Response:
    if not keys.enabled:
        return RedirectResponse("/console", status_code=303)
    return _page(request, "login.html", False, login=True)


@router.post("/login", response_model=None)
async def login(request: Request, keys: Keys, config: Config) -> Response:
    token = (await session.form_fields(request)).get("key", "")
    answer = RedirectResponse("/console", status_code=303)
    secure = request.url.scheme == "https"
    if session.log_in(keys, token, answer, secure, config.console_session_s) is None:
        return _page(request, "login.html", False, 401, login=True, message="unknown API key")
    return answer


@router.post("/logout")
async def logout() -> Response:
    answer = RedirectResponse("/console/login", status_code=303)
    session.log_out(answer)
    return answer
