"""Hostile and malformed client input: always a clear 4xx, never a 500, nothing appended."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, read_events, unique_name
from tests.support.topic_offsets import end_offsets

pytestmark = pytest.mark.slow

BAD_NAMES: list[tuple[Any, str]] = [
    ("", "at least 3"),
    ("ab", "at least 3"),
    ("a" * 64, "at most 63"),
    ("bücket", "ASCII"),
    ("\uff42\uff55\uff43\uff4b\uff45\uff54", "ASCII"),  # fullwidth confusables of "bucket"
    ("../etc/passwd", "lowercase letters"),
    ("a/b/c", "lowercase letters"),
    ("UPPER", "lowercase letters"),
    ("-abc", "start and end"),
    ("abc-", "start and end"),
    ("a b c", "lowercase letters"),
    ("abc\x00def", "lowercase letters"),
    ("abc\ndef", "lowercase letters"),
    ("x'; DROP TABLE bucket_jobs;--", "lowercase letters"),
    (123, "valid string"),
    (None, "valid string"),
    (["abc"], "valid string"),
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
async def test_invalid_bucket_name_is_422_with_reason(
    client: httpx.AsyncClient, name: Any, message: str
) -> None:
    response = await client.post("/buckets", json={"bucket_name": name})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{", "application/json", 422),
        (b"", "application/json", 422),
        (b"[]", "application/json", 422),
        (b'"abc"', "application/json", 422),
        (b'{"name": "abc"}', "application/json", 422),
        (b'{"bucket_name": "abc", "extra": 1}', "application/json", 422),
        (b'{"bucket_name": "abc"}', "text/plain", 415),
        (b"bucket_name=abc", "application/x-www-form-urlencoded", 415),
        (b'{"bucket_name": "abc"}', "", 415),
        (b"\xff\xfe\x00", "application/json", 400),
    ],
)
async def test_malformed_body_is_4xx_with_message(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/buckets", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/buckets/jobs/not-a-uuid", 422),
        ("GET", "/buckets/jobs/%00", 422),
        ("GET", "/buckets/jobs/00000000-0000-0000-0000-00000000000g", 422),
        ("GET", "/buckets?limit=0", 422),
        ("GET", "/buckets?limit=100000", 422),
        ("GET", "/buckets?limit=abc", 422),
        ("GET", "/buckets?cursor=not-a-cursor", 422),
        ("GET", "/buckets?cursor=" + "A" * 500, 422),
        ("DELETE", "/buckets", 405),
        ("PUT", "/buckets/jobs/00000000-0000-0000-0000-000000000000", 405),
        ("GET", "/nowhere", 404),
    ],
)
async def test_bad_paths_and_parameters_are_4xx(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("key", [b"", b"k" * 256, b"bad key with spaces", "ключ".encode()])
async def test_bad_idempotency_key_is_422(client: httpx.AsyncClient, key: bytes) -> None:
    response = await client.post(
        "/buckets", json={"bucket_name": "fine-name"}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 422, response.text


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/buckets/jobs/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert "no job" in response.json()["detail"]


async def test_rejected_requests_append_nothing(stack: Stack, client: httpx.AsyncClient) -> None:
    for name, _ in BAD_NAMES:
        await client.post("/buckets", json={"bucket_name": name})
    assert [r for r in await read_events(stack.settings)] == []


# Hostile input (issue #4): each request gets a clear 4xx with a reason, and the topic's end
# offsets do not move. Cases above that already cover a kind are not repeated here.

NESTED = 4000
CYRILLIC_A = "\u0430"

NASTY: list[tuple[str, dict[str, Any], int, str]] = [
    # id, request (httpx.request kwargs), status, fragment of `detail`
    ("body-over-limit", {"json": {"bucket_name": "a" * 40_000}}, 413, "larger than the limit"),
    (
        "deep-nested-array",
        {"content": b'{"bucket_name": ' + b"[" * NESTED + b"]" * NESTED + b"}"},
        400,
        "nested too deeply",
    ),
    (
        "deep-nested-object",
        {"content": b'{"a":' * (NESTED // 2) + b"1" + b"}" * (NESTED // 2)},
        400,
        "nested too deeply",
    ),
    ("raw-null-byte-in-json", {"content": b'{"bucket_name": "ab\x00c"}'}, 422, "JSON"),
    ("null-byte-in-field-name", {"json": {"bucket_name\x00": "abc"}}, 422, "bucket_name"),
    ("escape-sequence", {"json": {"bucket_name": "\x1b[31mred"}}, 422, "lowercase letters"),
    ("tab", {"json": {"bucket_name": "abc\tdef"}}, 422, "lowercase letters"),
    ("delete-char", {"json": {"bucket_name": "abc\x7fdef"}}, 422, "lowercase letters"),
    ("rtl-override", {"json": {"bucket_name": "abc\u202edef"}}, 422, "ASCII"),
    ("cyrillic-a", {"json": {"bucket_name": f"my-bucket-n{CYRILLIC_A}me"}}, 422, "ASCII"),
    ("zero-width-joiner", {"json": {"bucket_name": "buck\u200det"}}, 422, "ASCII"),
    ("zero-width-space", {"json": {"bucket_name": "bucket\u200b"}}, 422, "ASCII"),
    ("fullwidth-digits", {"json": {"bucket_name": "\uff11\uff12\uff13"}}, 422, "ASCII"),
    ("lone-surrogate", {"content": b'{"bucket_name": "ab\\ud800c"}'}, 422, "ASCII"),
    ("sql-or", {"json": {"bucket_name": "' OR '1'='1"}}, 422, "lowercase letters"),
    ("sql-comment", {"json": {"bucket_name": "abc--"}}, 422, "start and end"),
    ("sql-union", {"json": {"bucket_name": "x union select 1"}}, 422, "lowercase letters"),
    ("path-dots", {"json": {"bucket_name": ".."}}, 422, "at least 3"),
    ("path-encoded", {"json": {"bucket_name": "..%2f..%2fetc"}}, 422, "lowercase letters"),
    ("path-windows", {"json": {"bucket_name": "C:\\windows"}}, 422, "lowercase letters"),
    (
        "invalid-utf8-in-string",
        {"content": b'{"bucket_name": "ab\xc3\x28c"}'},
        400,
        "not valid UTF-8",
    ),
    ("overlong-utf8", {"content": b'{"bucket_name": "\xc0\xafetc"}'}, 400, "not valid UTF-8"),
    ("number-name", {"json": {"bucket_name": 1e308}}, 422, "valid string"),
    ("5000-digit-number", {"content": b'{"bucket_name": ' + b"9" * 5000 + b"}"}, 400, "too long"),
    ("infinite-number", {"content": b'{"bucket_name": 1e999999}'}, 422, "valid string"),
    ("bool-name", {"json": {"bucket_name": True}}, 422, "valid string"),
    ("json-patch-type", {"json": {"bucket_name": "abc"}, "ct": "application/jsonx"}, 415, "JSON"),
    ("multipart", {"content": b"--x\r\n", "ct": "multipart/form-data; boundary=x"}, 415, "JSON"),
    ("xml", {"content": b"<bucket_name>abc</bucket_name>", "ct": "application/xml"}, 415, "JSON"),
    (
        "idempotency-key-10k",
        {"json": {"bucket_name": "fine-name"}, "headers": {"Idempotency-Key": "k" * 10_000}},
        422,
        "255",
    ),
    (
        "idempotency-key-invalid-utf8",
        {"json": {"bucket_name": "fine-name"}, "headers": {"Idempotency-Key": b"\xff\xfe"}},
        422,
        "idempotency-key",
    ),
    (
        "idempotency-key-tab",
        {"json": {"bucket_name": "fine-name"}, "headers": {"Idempotency-Key": "a\tb"}},
        422,
        "idempotency-key",
    ),
]


@pytest.fixture
async def nothing_appended(stack: Stack) -> Any:
    """Fails the test if the topic's end offsets moved while it ran."""
    before = await end_offsets(stack.settings)
    assert len(before) == stack.settings.topic_partitions
    yield
    after = await end_offsets(stack.settings)
    if after != before:
        events = [(r.partition, r.offset, r.value[:300]) for r in await read_events(stack.settings)]
        raise AssertionError(f"a rejected request reached the log: {before} -> {after}: {events}")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "reason"),
    [pytest.param(kw, st, rs, id=i) for i, kw, st, rs in NASTY],
)
async def test_nasty_post_is_a_clear_4xx_and_appends_nothing(
    client: httpx.AsyncClient,
    nothing_appended: None,
    request_kwargs: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    kwargs = dict(request_kwargs)
    headers = {"content-type": kwargs.pop("ct", "application/json"), **kwargs.pop("headers", {})}
    response = await client.post("/buckets", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert reason.lower() in response.json()["detail"].lower()


async def _chunks(total: int, size: int = 1024) -> AsyncIterator[bytes]:
    yield b'{"bucket_name": "'
    for _ in range(total // size):
        yield b"a" * size
    yield b'"}'


async def test_chunked_body_over_the_limit_is_413_without_content_length(
    client: httpx.AsyncClient, nothing_appended: None
) -> None:
    request = client.build_request(
        "POST", "/buckets", content=_chunks(20 * 1024), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert response.status_code == 413, response.text
    assert "larger than the limit of 16384 bytes" in response.json()["detail"]


async def test_chunked_body_under_the_limit_is_accepted(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    name = unique_name()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"bucket_name": '
        yield f'"{name}"'.encode()
        yield b"}"

    response = await client.post(
        "/buckets", content=body(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text
    # All of its events are in before the next test compares end offsets.
    await stack.wait_terminal(client, response.json()["job_id"])


def test_declared_huge_body_is_refused_before_it_is_sent(
    stack: Stack, nothing_appended: None
) -> None:
    """A gigabyte announced and never sent: the API answers 413 from the headers alone."""
    host, port = stack.settings.api_host, stack.settings.api_port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /buckets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n{"
        )
        answer = b""
        while b"larger than the limit" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"larger than the limit of 16384 bytes" in answer


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("PATCH", "/buckets", 405, "method not allowed"),
        ("DELETE", "/buckets/jobs/00000000-0000-4000-8000-000000000000", 405, "not allowed"),
        ("POST", "/health", 405, "not allowed"),
        ("GET", "/buckets/jobs/00000000-0000-4000-8000-0000000000000", 422, "uuid"),
        ("GET", "/buckets/jobs/' OR 1=1 --", 422, "uuid"),
        ("GET", "/buckets/jobs/..%2f..%2fetc%2fpasswd", 404, "not found"),
        ("GET", "/buckets/jobs/%ff%fe", 422, "uuid"),
        ("GET", "/buckets/jobs/\uff10" * 1, 422, "uuid"),
        ("GET", "/buckets/jobs/" + "0" * 5000, 422, "uuid"),
        ("GET", "/buckets?limit=-1", 422, "greater than or equal to 1"),
        ("GET", "/buckets?limit=" + "9" * 40, 422, "less than or equal to 1000"),
        ("GET", "/buckets?limit=1e3", 422, "valid integer"),
        ("GET", "/buckets?limit=NaN", 422, "valid integer"),
        ("GET", "/buckets?limit=", 422, "valid integer"),
        ("GET", "/buckets?limit=0x10", 422, "valid integer"),
        ("GET", "/buckets?cursor=%00", 422, "cursor"),
        ("GET", "/buckets?cursor=' OR 1=1 --", 422, "cursor"),
        ("GET", "/buckets?cursor=%ff%fe", 422, "cursor"),
        ("GET", "/buckets?cursor=" + "c" * 20_000, 414, "URL is larger than the limit"),
        ("GET", "/buckets/jobs/" + "0" * 20_000, 414, "URL is larger than the limit"),
    ],
)
async def test_nasty_paths_methods_and_parameters_are_clear_4xx(
    client: httpx.AsyncClient,
    nothing_appended: None,
    method: str,
    path: str,
    status: int,
    reason: str,
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status, response.text
    assert reason.lower() in response.text.lower()
    if status == 405:
        assert response.headers["allow"]


async def test_huge_header_is_refused(client: httpx.AsyncClient, nothing_appended: None) -> None:
    response = await client.post(
        "/buckets", json={"bucket_name": "fine-name"}, headers={"X-Padding": "p" * 100_000}
    )
    assert response.status_code == 431, response.text
    assert "headers are larger than the limit of 16384 bytes" in response.json()["detail"]
