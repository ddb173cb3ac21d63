"""Who may call the API: bearer API keys, their scopes, and a rate limit per key.

A pure ASGI middleware in front of every route (also routes added later), so nothing is parsed,
read or appended for a request that is refused. Open when no key is configured.

The operator console (`/console`) is used from a browser, which cannot add an Authorization
header to a link or an EventSource: under `/console` the key may come instead from the
HttpOnly cookie its login form sets (`services/api/console/session.py`). A write through that
cookie must come from the console's own pages (its `Origin`), so another site cannot make a
logged-in browser post to it.
"""

from __future__ import annotations

import logging
import re

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.api_keys import SAFE_METHODS, ApiKey, KeyRing
from services.api.rate_limit import TokenBuckets, retry_after_header

log = logging.getLogger(__name__)

# Liveness probes and the API's own description need no key (docs/security.md).
PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/console/login",
        "/console/logout",
    }
)
CONSOLE_PREFIX = "/console"
CONSOLE_COOKIE = "akave_console_key"
# The docs pages' JavaScript, CSS and icon, served by the gateway itself (no CDN).
DOCS_ASSETS_URL = "/docs-assets"
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
REALM = 'Bearer realm="akave-gateway"'


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(DOCS_ASSETS_URL + "/")


class AccessControl:
    def __init__(self, app: ASGIApp, keys: KeyRing, limiter: TokenBuckets | None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protected = scope["type"] in ("http", "websocket") and not _public(scope["path"])
        if not protected or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            # No HTTP answer on a websocket: refuse the handshake (policy violation).
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "API key refused"})
        else:
            await refusal(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        header = headers.get("authorization")
        method = scope.get("method", "GET")  # a websocket only reads
        path = scope["path"]
        if header is None and (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")):
            return self._console_refusal(scope, headers, method)
        if header is None:
            return _unauthorized("missing Authorization header: send `Authorization: Bearer <key>`")
        match = _BEARER.match(header)
        if match is None:
            return _unauthorized(
                "malformed Authorization header: expected `Bearer <key>`", error="invalid_request"
            )
        key = self.keys.find(match.group(1))
        if key is None:
            return _unauthorized("unknown API key", error="invalid_token")
        return self._permitted(scope, key, method)

    def _console_refusal(self, scope: Scope, headers: Headers, method: str) -> Response | None:
        token = cookie_parser(headers.get("cookie", "")).get(CONSOLE_COOKIE)
        key = self.keys.find(token) if token else None
        if key is None:
            if method in SAFE_METHODS:
                return RedirectResponse(CONSOLE_PREFIX + "/login", status_code=303)
            return _unauthorized("log in to the console first", error="invalid_token")
        if method not in SAFE_METHODS and not _same_origin(headers):
            log.warning("console write from another origin refused", extra={"api_key": key.name})
            return JSONResponse({"detail": "cross-origin console write refused"}, status_code=403)
        return self._permitted(scope, key, method)

    def _permitted(self, scope: Scope, key: ApiKey, method: str) -> Response | None:
        scope.setdefault("state", {})["api_key"] = key  # what the console shows and offers
        if not key.allows(method):
            log.info("api key lacks scope", extra={"api_key": key.name, "method": method})
            return JSONResponse(
                {"detail": f"API key {key.name!r} is read-only; {method} needs scope 'write'"},
                status_code=403,
                headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="write"'},
            )
        if self.limiter is not None and (wait := self.limiter.take(key.name)) > 0:
            log.info("api key rate limited", extra={"api_key": key.name})
            return JSONResponse(
                {"detail": f"rate limit of API key {key.name!r} exceeded; retry later"},
                status_code=429,
                headers={"Retry-After": retry_after_header(wait)},
            )
        return None


def _same_origin(headers: Headers) -> bool:
    """A browser's write from a page of this host (`Origin`, else `Sec-Fetch-Site`)."""
    origin = headers.get("origin")
    if origin is not None:
        return origin.split("://", 1)[-1] == headers.get("host")
    return headers.get("sec-fetch-site", "same-origin") == "same-origin"


def _unauthorized(detail: str, error: str | None = None) -> JSONResponse:
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return JSONResponse(
        {"detail": detail}, status_code=401, headers={"WWW-Authenticate": challenge}
    )
