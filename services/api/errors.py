"""How failures become HTTP answers: clear 4xx for the client, fast 503 for outages, no 500s."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException

from shared.errors import GatewayError, TargetRefused

if TYPE_CHECKING:
    from services.api.schemas import Job

log = logging.getLogger(__name__)


class ApiError(GatewayError):
    """Root of the errors the API raises; `install` below gives each its HTTP answer."""


class BucketAlreadyCreated(ApiError):
    def __init__(self, owner: Job) -> None:
        super().__init__(f"bucket {owner.bucket_name!r} was already created by job {owner.job_id}")
        self.owner = owner


class IdempotencyKeyReused(ApiError):
    def __init__(self, job: Job) -> None:
        super().__init__(
            f"Idempotency-Key was already used for job {job.job_id} with bucket_name "
            f"{job.bucket_name!r}; a key may only be reused with the same body"
        )


class JobNotFound(ApiError, LookupError):
    """No job of that id in the read model."""


class NotRetryable(ApiError):
    """The job may not be retried: 409 (not failed) or 422 (its failure cannot heal)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code


class BadCursor(ApiError, ValueError):
    """A page cursor this API did not return."""


class ProjectionBehind(ApiError):
    """The read model has not caught up with the log in time; the answer is not known yet."""


class LogUnavailable(ApiError):
    """The log could not take or answer a request within the time allowed."""


class TooManyStreams(ApiError):
    """This API process already serves `LIVE_MAX_STREAMS` streams."""


class BodyTooLarge(ApiError):
    """The body passed `MAX_BODY_BYTES` while it was read (`RequestLimits` answers 413)."""


class ApiKeyConfigError(ApiError, ValueError):
    """API_KEYS or API_KEYS_FILE holds an entry that is not `name:sha256hex[:scope]`."""


def _describe(errors: list[dict[str, object]]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")  # type: ignore[attr-defined]
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def install(app: FastAPI, retry_after_s: int) -> None:
    retry_after = {"Retry-After": str(retry_after_s)}

    def try_again(detail: str) -> JSONResponse:
        """503 with Retry-After: the one answer for "not now, ask again"."""
        return JSONResponse(
            {"detail": detail},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers=retry_after,
        )

    def unavailable(what: str) -> JSONResponse:
        return try_again(f"{what} is unavailable; try again shortly")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse(
            {"detail": _describe(errors), "errors": errors},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # FastAPI says only "There was an error parsing the body"; say why where we can.
        cause = exc.__cause__
        reason = _UNREADABLE_BODY.get(type(cause)) if exc.status_code == 400 and cause else None
        if reason is not None:
            exc = HTTPException(400, reason, exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(BucketAlreadyCreated)
    async def exists(_: Request, exc: BucketAlreadyCreated) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "job_id": str(exc.owner.job_id), "tx_hash": exc.owner.tx_hash},
            status_code=status.HTTP_409_CONFLICT,
        )

    @app.exception_handler(IdempotencyKeyReused)
    async def reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(JobNotFound)
    async def not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(NotRetryable)
    async def not_retryable(_: Request, exc: NotRetryable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(TargetRefused)
    async def refused_target(_: Request, exc: TargetRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(BadCursor)
    async def bad_cursor(_: Request, exc: BadCursor) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(TooManyStreams)
    async def too_many_streams(_: Request, exc: TooManyStreams) -> JSONResponse:
        return try_again(f"too many open event streams ({exc}); try again shortly")

    @app.exception_handler(LogUnavailable)
    async def log_down(_: Request, exc: LogUnavailable) -> JSONResponse:
        return unavailable("the event log")

    @app.exception_handler(ProjectionBehind)
    async def behind(_: Request, exc: ProjectionBehind) -> JSONResponse:
        return unavailable("the read model (it is behind the event log)")

    @app.exception_handler(SQLAlchemyError)
    async def db_down(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not isinstance(exc, DBAPIError) or exc.connection_invalidated or _is_outage(exc):
            log.warning("database unavailable", extra={"error": repr(exc)[:500]})
        else:
            log.error("database error", exc_info=exc)
        return unavailable("the database")

    @app.exception_handler(TimeoutError)
    async def timed_out(_: Request, exc: TimeoutError) -> JSONResponse:
        log.warning("dependency timed out")
        return unavailable("a dependency")

    @app.exception_handler(OSError)
    async def network(_: Request, exc: OSError) -> JSONResponse:
        log.warning("dependency unreachable", extra={"error": repr(exc)})
        return unavailable("a dependency")


_UNREADABLE_BODY: dict[type[BaseException], str] = {
    RecursionError: "the body is not JSON this API reads: it is nested too deeply",
    UnicodeDecodeError: "the body is not valid UTF-8 JSON",
    ValueError: "the body is not JSON this API reads: a number in it is too long",  # int limit
}


def _is_outage(exc: DBAPIError) -> bool:
    return type(exc.orig).__name__ in {"OperationalError", "InterfaceError"}
