"""Size limits on requests: headers (431) and bodies (413), checked before any route runs.

Headers: their total size (names, values, separators) over the limit is refused with 431, and
a URL (path and query) over the same limit with 414. The HTTP server (uvicorn with httptools)
has already read them; this bounds what the app accepts, not the server's buffer
(docs/security.md).

Bodies: never held beyond the limit.

A declared `Content-Length` over the limit is refused before any byte is read. A body without
one (chunked) is counted as it streams in; the moment it passes the limit the request is cut
off and whatever the route would have answered is replaced by the 413. Routes read the whole
body before they act, so a refused request never reaches the log. The connection stays open:
the server discards the rest of the body (it does not keep it), so the client, still sending,
gets the 413 instead of a reset connection.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import BodyTooLarge


class RequestLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    def _refusal(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"},
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        limit = self.max_header_bytes
        if target > limit or header_bytes > limit:
            what, status = ("URL is", 414) if target > limit else ("headers are", 431)
            response = JSONResponse(
                {"detail": f"request {what} larger than the limit of {limit} bytes"},
                status_code=status,
            )
            await response(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refusal()(scope, receive, send)
            return

        received = 0
        exceeded = False
        replaced = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced, started
            if exceeded:  # whatever the app makes of the cut-off body, the answer is 413
                if not started and not replaced:
                    replaced = True
                    await self._refusal()(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
        if exceeded and not started and not replaced:
            await self._refusal()(scope, receive, send)
