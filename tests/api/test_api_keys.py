"""Optional API keys: bearer auth on every route but the public ones, scopes, a rate limit per
key, and the `apikey new` command. The HTTP tests run the real API process on a real topic."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.api.api_keys import (
    ApiKeyConfigError,
    KeyRing,
    digest_of,
    load_key_ring,
    new_token,
    parse_entries,
)
from services.api.rate_limit import TokenBuckets, retry_after_header
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.support.stack import REPO, Stack, free_port, settings_env, unique_name
from tests.support.topic_offsets import end_offsets

WRITER = new_token()
READER = new_token()
OTHER = new_token()
STACK_SETTINGS = {
    "api_keys": f"writer:{digest_of(WRITER)}:write,reader:{digest_of(READER)}:read",
    "api_rate_limit_per_s": 1000.0,
    "api_rate_limit_burst": 1000,
}
PUBLIC = ("/health", "/openapi.json", "/docs", "/redoc", "/docs-assets/swagger-ui-bundle.js")


# Configuration --------------------------------------------------------------------------------


def test_entries_parse_with_default_scope_comments_and_lines() -> None:
    text = f"a:{'0' * 64}, b:{'A' * 64}:read\n# a comment\nc:{'1' * 64}:write  # trailing\n"
    keys = parse_entries(text, "API_KEYS")
    assert [(k.name, k.scope) for k in keys] == [("a", "write"), ("b", "read"), ("c", "write")]
    assert keys[1].digest == bytes.fromhex("a" * 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"name:{'0' * 64}:admin", "scope 'admin'"),
        ("name:abc", "SHA-256 of the key"),
        (f"bad name:{'0' * 64}", "must be 1-64"),
        (f"a:{'0' * 64}:read:extra", "is not name:sha256hex"),
        (f"a:{'0' * 64},a:{'1' * 64}", "a name of its own"),
        (f"a:{'0' * 64},b:{'0' * 64}", "configured twice"),
    ],
)
def test_bad_entries_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ApiKeyConfigError, match=re.escape(message)):
        KeyRing(parse_entries(text, "API_KEYS"))


def test_a_pasted_key_is_refused_without_echoing_it() -> None:
    token = new_token()
    with pytest.raises(ApiKeyConfigError) as refused:
        parse_entries(token, "API_KEYS")
    assert token not in str(refused.value)
    with pytest.raises(ApiKeyConfigError) as refused:
        parse_entries(f"ci:{token}", "API_KEYS")
    assert token not in str(refused.value)


def test_keys_come_from_api_keys_and_api_keys_file(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# keys\nfiled:{digest_of(OTHER)}:read\n")
    ring = load_key_ring(f"inline:{digest_of(WRITER)}", key_file)
    assert ring.find(WRITER).name == "inline"  # type: ignore[union-attr]
    assert ring.find(OTHER).name == "filed"  # type: ignore[union-attr]
    assert ring.find(READER) is None
    assert not load_key_ring("", None).enabled
    with pytest.raises(ApiKeyConfigError, match="cannot read"):
        load_key_ring("", tmp_path / "missing")


def test_read_keys_may_only_use_safe_methods() -> None:
    reader, writer = parse_entries(f"r:{'0' * 64}:read,w:{'1' * 64}:write", "API_KEYS")
    assert [reader.allows(m) for m in ("GET", "HEAD", "OPTIONS", "POST", "DELETE", "PUT")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert all(writer.allows(m) for m in ("GET", "POST", "DELETE", "PATCH"))


def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # per key
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 60
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # never more than the burst saved


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0.01, 0.5, 1.0, 1.2, 7.9)] == ["1", "1", "1", "2", "8"]


def test_apikey_new_prints_a_fresh_key_once_and_its_config_line() -> None:
    def run() -> tuple[str, str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "apikey",
                "new",
                "--name",
                "ci",
                "--scope",
                "read",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        token = re.findall(r"^akgw_[A-Za-z0-9_-]{43}$", done.stdout, re.M)
        line = re.findall(r"^ci:[0-9a-f]{64}:read$", done.stdout, re.M)
        assert len(token) == 1 and len(line) == 1, done.stdout
        assert done.stdout.count(token[0]) == 1
        return token[0], line[0]

    (token, line), (second, _) = run(), run()
    assert token != second
    key = load_key_ring(line, None).find(token)
    assert key is not None and key.name == "ci" and key.scope == "read"


def test_the_api_refuses_to_start_with_a_malformed_key_entry(stack_settings: Settings) -> None:
    token = new_token()
    env = settings_env(stack_settings.model_copy(update={"api_keys": f"ci:{token}"}))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "api"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "refusing to start: API_KEYS entry 1" in done.stderr
    assert token not in done.stdout + done.stderr


# Over HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Only the API process (and its topics): nothing here needs jobs to run."""
    asyncio.run(ensure_topics(stack_settings))
    running = Stack(stack_settings, tmp_path_factory.mktemp("stack"))
    running.start("api")
    try:
        yield running
    finally:
        running.stop()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every documented (method, template, path) that needs a key, parameters filled in."""
    found = []
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
                found.append((method.upper(), template, path))
    return found


async def test_every_protected_operation_refuses_missing_malformed_and_unknown_keys(
    stack: Stack,
) -> None:
    async with stack.client() as client:
        document = (await client.get("/openapi.json")).json()
        operations = _operations(document)
        assert ("POST", "/buckets", "/buckets") in operations
        assert ("GET", "/buckets", "/buckets") in operations
        assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
        before = await end_offsets(stack.settings)
        assert len(before) == stack.settings.topic_partitions
        for method, template, path in operations:
            for authorization, reason in [
                (None, "missing Authorization header"),
                (f"Basic {WRITER}", "malformed Authorization header"),
                ("Bearer", "malformed Authorization header"),
                (f"Bearer {WRITER} extra", "malformed Authorization header"),
                (f"Bearer {OTHER}", "unknown API key"),
                (f"Bearer {WRITER[:-1]}", "unknown API key"),
            ]:
                headers = {"Authorization": authorization} if authorization else {}
                response = await client.request(
                    method, path, json={"bucket_name": unique_name()}, headers=headers
                )
                assert response.status_code == 401, (method, path, authorization, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert reason in response.json()["detail"]
                assert "401" in document["paths"][template][method.lower()]["responses"]
        assert await end_offsets(stack.settings) == before


async def test_public_paths_need_no_key(stack: Stack) -> None:
    async with stack.client() as client:
        for path in PUBLIC:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)


async def test_metrics_need_a_key_like_every_route(stack: Stack) -> None:
    async with stack.client() as client:
        assert (await client.get("/metrics")).status_code == 401
        read = await client.get("/metrics", headers={"Authorization": f"Bearer {READER}"})
        assert read.status_code == 200 and "akave_http_requests_total" in read.text


async def test_a_write_key_creates_and_reads(stack: Stack) -> None:
    async with stack.client() as client:
        auth = {"Authorization": f"Bearer {WRITER}"}
        response = await client.post("/buckets", json={"bucket_name": unique_name()}, headers=auth)
        assert response.status_code == 202, response.text
        response = await client.get("/buckets", headers={"Authorization": f"bearer {WRITER}"})
        assert response.status_code == 200, response.text


async def test_a_read_key_reads_but_may_not_write(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {READER}"}
    async with stack.client() as client:
        assert (await client.get("/buckets", headers=auth)).status_code == 200
        before = await end_offsets(stack.settings)
        response = await client.post("/buckets", json={"bucket_name": unique_name()}, headers=auth)
        assert response.status_code == 403, response.text
        assert (
            response.json()["detail"] == "API key 'reader' is read-only; POST needs scope 'write'"
        )
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        assert await end_offsets(stack.settings) == before


async def test_keys_never_reach_the_logs(stack: Stack) -> None:
    async with stack.client() as client:
        await client.get("/buckets", headers={"Authorization": f"Bearer {OTHER}"})
        await client.post(
            "/buckets", json={"bucket_name": "abc"}, headers={"Authorization": f"Bearer {READER}"}
        )
    logs = stack.logs(tail=100_000)
    for token in (WRITER, READER, OTHER):
        assert token not in logs


async def test_each_key_has_its_own_rate_limit_answered_429_with_retry_after(
    stack: Stack, tmp_path: Path
) -> None:
    limited = Stack(
        stack.settings.model_copy(
            update={"api_port": free_port(), "api_rate_limit_per_s": 1.0, "api_rate_limit_burst": 3}
        ),
        tmp_path,
    )
    limited.start("api")
    try:
        async with limited.client() as client:
            writer = {"Authorization": f"Bearer {WRITER}"}
            codes = [(await client.get("/buckets", headers=writer)).status_code for _ in range(3)]
            assert codes == [200, 200, 200]
            before = await end_offsets(stack.settings)
            refused = await client.post(
                "/buckets", json={"bucket_name": unique_name()}, headers=writer
            )
            assert refused.status_code == 429, refused.text
            assert "rate limit of API key 'writer'" in refused.json()["detail"]
            assert refused.headers["retry-after"] == "1"
            assert await end_offsets(stack.settings) == before
            # Another key is not held back by this one's use; /health is never limited.
            reader = {"Authorization": f"Bearer {READER}"}
            assert (await client.get("/buckets", headers=reader)).status_code == 200
            assert all([(await client.get("/health")).status_code == 200 for _ in range(5)])
            await asyncio.sleep(float(refused.headers["retry-after"]))
            assert (await client.get("/buckets", headers=writer)).status_code == 200
    finally:
        limited.stop()


def test_websockets_are_guarded_too() -> None:
    """A websocket route added later cannot bypass the keys: the handshake is refused."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from services.api.access import AccessControl

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = AccessControl(
        Starlette(routes=[WebSocketRoute("/events", echo)]),
        KeyRing(parse_entries(f"reader:{digest_of(READER)}:read", "API_KEYS")),
        None,
    )
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": f"Bearer {OTHER}"}):
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                client.websocket_connect("/events", headers=headers),
            ):
                pass
            assert refused.value.code == 1008
        with client.websocket_connect(
            "/events", headers={"Authorization": f"Bearer {READER}"}
        ) as websocket:
            assert websocket.receive_text() == "hello"
