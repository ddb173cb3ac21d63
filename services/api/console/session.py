"""Console login: the API key typed into a form, kept by the browser in an HttpOnly cookie.

The key travels in a POST body and a cookie only, never in a URL (so never in an access log,
a proxy log or the browser's history). The cookie is HttpOnly (no script reads it),
`SameSite=Strict` (no other site's page sends it), limited to `/console`, `Secure` when the
console is served over HTTPS, and lives CONSOLE_SESSION_S. `AccessControl` reads it.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from services.api.access import CONSOLE_COOKIE, CONSOLE_PREFIX
from services.api.api_keys import ApiKey, KeyRing


async def form_fields(request: Request) -> dict[str, str]:
    """The first value of each field of a URL-encoded form body (RequestLimits caps its size)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body).items()}


def log_in(
    keys: KeyRing, token: str, response: Response, secure: bool, max_age_s: int
) -> ApiKey | None:
    """Set the cookie for `token` on `response` if it is a configured key; None otherwise."""
    key = keys.find(token.strip())
    if key is not None:
        response.set_cookie(
            CONSOLE_COOKIE,
            token.strip(),
            max_age=max_age_s,
            path=CONSOLE_PREFIX,
            secure=secure,
            httponly=True,
            samesite="strict",
        )
    return key


def log_out(response: Response) -> None:
    response.delete_cookie(CONSOLE_COOKIE, path=CONSOLE_PREFIX, httponly=True, samesite="strict")


def can_write(request: Request, keys: KeyRing) -> bool:
    """With API keys off the console is open, like the API; else as the key's scope says."""
    if not keys.enabled:
        return True
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key is not None and key.allows("POST")
