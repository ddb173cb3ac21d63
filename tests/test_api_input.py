"""Hostile and malformed client input: always a clear 4xx, never a 500, nothing appended."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.stack import Stack, read_events

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
