"""The size-limit middleware on its own, in process: the boundary, and routes that mishandle
the cut-off body (the end-to-end cases are in test_api_input.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.api.request_limits import RequestLimits

LIMIT = 1000


async def echo_length(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


async def swallowing(request: Request) -> Response:
    try:
        await request.body()
    except Exception:
        return PlainTextResponse("swallowed", status_code=200)
    return PlainTextResponse("read")


async def silent(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads until it fails, then returns without answering at all."""
    try:
        while (await receive()).get("more_body"):
            pass
    except Exception:
        return


def client(app: object) -> httpx.AsyncClient:
    limited = RequestLimits(app, max_body_bytes=LIMIT, max_header_bytes=2048)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://t")


async def chunked(total: int, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


ROUTES = Starlette(
    routes=[
        Route("/echo", echo_length, methods=["POST"]),
        Route("/swallow", swallowing, methods=["POST"]),
    ]
)


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_limit_itself_is_allowed_one_byte_more_is_not(streamed: bool) -> None:
    async with client(ROUTES) as http:
        for size, status in ((LIMIT, 200), (LIMIT + 1, 413)):
            content = chunked(size) if streamed else b"x" * size
            response = await http.post("/echo", content=content)
            assert response.status_code == status, (size, response.text)
            if status == 200:
                assert response.text == str(LIMIT)
            else:
                assert response.json() == {
                    "detail": f"request body is larger than the limit of {LIMIT} bytes"
                }


async def test_a_route_that_swallows_the_cut_off_still_answers_413() -> None:
    async with client(ROUTES) as http:
        response = await http.post("/swallow", content=chunked(5 * LIMIT))
    assert response.status_code == 413


async def test_an_app_that_gives_up_silently_still_answers_413() -> None:
    async with client(silent) as http:
        response = await http.post("/", content=chunked(5 * LIMIT))
    assert response.status_code == 413


async def test_headers_over_their_limit_are_431() -> None:
    async with client(ROUTES) as http:
        response = await http.post("/echo", content=b"", headers={"x-pad": "p" * 3000})
    assert response.status_code == 431
    assert "headers are larger than the limit of 2048 bytes" in response.json()["detail"]


async def test_a_url_over_the_header_limit_is_414() -> None:
    async with client(ROUTES) as http:
        response = await http.post("/echo?q=" + "q" * 3000, content=b"")
    assert response.status_code == 414
    assert "URL is larger than the limit of 2048 bytes" in response.json()["detail"]
