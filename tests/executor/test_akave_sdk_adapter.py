"""The Akave SDK adapter against a stand-in `akavesdk` (support/akave_stub), never the network."""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from services.executor.backends.akave_sdk import (
    INSTALL_HINT,
    AkaveConfigurationError,
    AkaveSdkBackend,
)
from services.executor.backends.base import ChainBucket
from services.executor.errors import BackendError
from shared import error_codes
from shared.events import BucketCreated
from shared.settings import Settings
from tests.support.stack import REPO


def make_settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "akave_backend": "akave",
        "akave_private_key": None,
        "akave_private_key_file": None,
        "akave_node_address": "node.test:5500",
        "akave_max_concurrency": 4,
    }
    base.update(values)
    return Settings(_env_file=None, **base)


@pytest.fixture
async def backend(sdk: ModuleType, key: str) -> AsyncIterator[AkaveSdkBackend]:
    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    try:
        yield built
    finally:
        await built.close()


def texts_of(error: BaseException) -> str:
    """Everything a traceback could print about `error` and the exceptions chained to it."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), *map(str, seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def key_forms(key: str) -> list[str]:
    return [key, key.upper(), "0x" + key, "0X" + key.upper()]


async def wait_for_event(event: threading.Event) -> None:
    """Wait (5 s at most) for a thread event in a helper thread, leaving the loop free."""
    assert await asyncio.to_thread(event.wait, 5), "the SDK call never started"


# --- create / view --------------------------------------------------------------------------


async def test_create_returns_the_sdk_tx_hash_which_the_event_normalises(
    backend: AkaveSdkBackend,
) -> None:
    created = await backend.create_bucket("photos")

    assert created.name == "photos"
    assert created.bucket_id is None
    assert isinstance(created.created_at, int)
    assert len(created.tx_hash) == 64
    assert not created.tx_hash.startswith("0x")

    event = BucketCreated(job_id=uuid.uuid4(), bucket_name="photos", tx_hash=created.tx_hash)
    assert event.tx_hash == "0x" + created.tx_hash.lower()
    upper = BucketCreated(
        job_id=uuid.uuid4(), bucket_name="photos", tx_hash=created.tx_hash.upper()
    )
    assert upper.tx_hash == event.tx_hash


async def test_view_maps_an_existing_bucket(backend: AkaveSdkBackend, sdk: ModuleType) -> None:
    created = await backend.create_bucket("photos")

    found = await backend.view_bucket("photos")

    assert isinstance(found, ChainBucket)
    assert found.name == "photos"
    assert found.bucket_id and isinstance(found.bucket_id, str)
    assert found.created_at == created.created_at
    assert [c.method for c in sdk.calls] == ["ipc", "create_bucket", "view_bucket"]
    assert all(c.name in (None, "photos") for c in sdk.calls)


async def test_settings_are_passed_to_the_sdk_config(sdk: ModuleType, key: str) -> None:
    settings = make_settings(
        akave_private_key=key,
        akave_max_concurrency=3,
        akave_block_part_size=4096,
        akave_use_connection_pool=False,
        akave_connection_timeout_s=7,
    )
    built = AkaveSdkBackend.from_settings(settings)
    try:
        config = sdk.instances[-1].config
        assert config == sdk.SDKConfig(
            address="node.test:5500",
            max_concurrency=3,
            block_part_size=4096,
            use_connection_pool=False,
            private_key=key,
            connection_timeout=7,
        )
    finally:
        await built.close()


# --- threads and the event loop -------------------------------------------------------------


async def test_sdk_calls_run_in_the_backend_thread_pool_not_on_the_event_loop(
    backend: AkaveSdkBackend, sdk: ModuleType
) -> None:
    await backend.create_bucket("photos")
    await backend.view_bucket("photos")
    await backend.close()

    loop_thread = threading.get_ident()
    assert [c.method for c in sdk.calls] == ["ipc", "create_bucket", "view_bucket", "close"]
    for call in sdk.calls:
        assert call.thread_id != loop_thread
        assert call.thread_name.startswith("akave-sdk")


async def test_the_event_loop_keeps_serving_while_an_sdk_call_blocks(
    backend: AkaveSdkBackend, sdk: ModuleType
) -> None:
    gate = sdk.block_next("create_bucket")
    create = asyncio.create_task(backend.create_bucket("photos"))
    try:
        await wait_for_event(gate.entered)

        ticks = 0

        async def other_work() -> None:
            nonlocal ticks
            for _ in range(20):
                await asyncio.sleep(0)
                ticks += 1

        await asyncio.wait_for(other_work(), timeout=2)
        assert ticks == 20
        assert await backend.view_bucket("elsewhere") is None  # another worker still serves
        assert not create.done()
    finally:
        gate.release.set()
    created = await asyncio.wait_for(create, timeout=5)
    assert created.name == "photos"


async def test_concurrent_first_calls_dial_the_ipc_node_once(
    backend: AkaveSdkBackend, sdk: ModuleType
) -> None:
    gate = sdk.block_next("ipc")
    first = asyncio.create_task(backend.view_bucket("one"))
    await wait_for_event(gate.entered)
    others = [asyncio.create_task(backend.view_bucket(f"name-{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    gate.release.set()

    assert await asyncio.wait_for(asyncio.gather(first, *others), timeout=5) == [None] * 4
    assert sdk.instances[-1].ipc_calls == 1
    assert [c.method for c in sdk.calls].count("ipc") == 1


async def test_a_failed_dial_is_retryable_and_dialled_again_next_call(
    backend: AkaveSdkBackend, sdk: ModuleType
) -> None:
    sdk.fail_next("connection refused", method="ipc")

    with pytest.raises(BackendError) as caught:
        await backend.view_bucket("photos")
    assert "Failed to initialize IPC API" in str(caught.value)
    assert caught.value.code == error_codes.BACKEND_UNAVAILABLE
    assert caught.value.retryable is True

    assert await backend.view_bucket("photos") is None
    assert sdk.instances[-1].ipc_calls == 2


async def test_the_stub_refuses_ipc_without_a_private_key(sdk: ModuleType, key: str) -> None:
    bare = sdk.SDK(sdk.SDKConfig("node.test:5500", 1, 1024, True))
    built = AkaveSdkBackend(bare, private_key=key, max_workers=1)
    try:
        with pytest.raises(BackendError) as caught:
            await built.view_bucket("photos")
        assert str(caught.value).startswith("Failed to initialize IPC API: ")
        assert caught.value.code == error_codes.BACKEND_UNAVAILABLE
    finally:
        await built.close()


# --- error classification -------------------------------------------------------------------


async def test_duplicate_create_maps_to_bucket_already_on_chain(
    backend: AkaveSdkBackend,
) -> None:
    await backend.create_bucket("photos")

    with pytest.raises(BackendError) as caught:
        await backend.create_bucket("photos")
    assert "0x497ef2c2" in str(caught.value)
    assert caught.value.code == error_codes.BUCKET_ALREADY_ON_CHAIN
    assert caught.value.retryable is True


async def test_bucket_names_are_unique_per_owner_not_globally(
    sdk: ModuleType, backend: AkaveSdkBackend
) -> None:
    await backend.create_bucket("photos")
    other = AkaveSdkBackend.from_settings(make_settings(akave_private_key=secrets.token_hex(32)))
    try:
        assert await other.view_bucket("photos") is None
        assert (await other.create_bucket("photos")).name == "photos"
    finally:
        await other.close()


async def test_insufficient_funds_is_not_retryable(
    backend: AkaveSdkBackend, sdk: ModuleType
) -> None:
    sdk.fail_next(
        "bucket creation failed: {'code': -32000, 'message': "
        "'insufficient funds for gas * price + value: balance 0, tx cost 5000000'}",
        method="create_bucket",
    )
    with pytest.raises(BackendError) as caught:
        await backend.create_bucket("photos")
    assert caught.value.code == error_codes.INSUFFICIENT_FUNDS
    assert caught.value.retryable is False


async def test_receipt_timeout_is_retryable(backend: AkaveSdkBackend, sdk: ModuleType) -> None:
    sdk.fail_next(
        "bucket creation failed: Transaction HexBytes('0xabc') is not in the chain after "
        "120 seconds",
        method="create_bucket",
    )
    with pytest.raises(BackendError) as caught:
        await backend.create_bucket("photos")
    assert caught.value.code == error_codes.RECEIPT_TIMEOUT
    assert caught.value.retryable is True


async def test_a_non_sdk_exception_also_becomes_a_backend_error(
    backend: AkaveSdkBackend, sdk: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, ctx: object, name: str) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(sdk.IPC, "view_bucket", broken)
    with pytest.raises(BackendError) as caught:
        await backend.view_bucket("photos")
    assert "surprise" in str(caught.value)
    assert caught.value.code == error_codes.BACKEND_ERROR
    assert caught.value.retryable is True


# --- the private key ------------------------------------------------------------------------


async def test_no_private_key_is_a_clear_error_at_construction(sdk: ModuleType) -> None:
    with pytest.raises(AkaveConfigurationError) as caught:
        AkaveSdkBackend.from_settings(make_settings())
    message = str(caught.value)
    assert "AKAVE_PRIVATE_KEY" in message
    assert "AKAVE_PRIVATE_KEY_FILE" in message
    assert sdk.instances == []


async def test_a_blank_private_key_counts_as_none(sdk: ModuleType, tmp_path: Path) -> None:
    blank = tmp_path / "key"
    blank.write_text("  \n")
    with pytest.raises(AkaveConfigurationError, match="AKAVE_PRIVATE_KEY"):
        AkaveSdkBackend.from_settings(make_settings(akave_private_key_file=blank))


async def test_an_unreadable_key_file_is_a_clear_error(sdk: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(AkaveConfigurationError, match="AKAVE_PRIVATE_KEY_FILE"):
        AkaveSdkBackend.from_settings(make_settings(akave_private_key_file=tmp_path / "missing"))


async def test_the_private_key_can_come_from_akave_private_key_file(
    sdk: ModuleType, key: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "akave.key"
    key_file.write_text("0x" + key + "\n")
    key_file.chmod(0o600)  # the services refuse key files others can read

    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key_file=key_file))
    try:
        assert sdk.instances[-1].config.private_key == "0x" + key
        assert (await built.create_bucket("photos")).name == "photos"
    finally:
        await built.close()


async def test_the_private_key_never_appears_in_repr(backend: AkaveSdkBackend, key: str) -> None:
    await backend.view_bucket("photos")
    shown = repr(backend) + str(backend)
    for form in key_forms(key):
        assert form not in shown
    assert "node.test:5500" in repr(backend)


@pytest.mark.parametrize("leaked", ["plain", "0x", "upper"])
async def test_the_private_key_is_masked_in_errors_and_logs(
    backend: AkaveSdkBackend,
    sdk: ModuleType,
    key: str,
    caplog: pytest.LogCaptureFixture,
    leaked: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown_key = {"plain": key, "0x": "0x" + key, "upper": "0X" + key.upper()}[leaked]
    sdk.fail_next(
        f"bucket creation failed: could not sign with {shown_key}: insufficient funds",
        method="create_bucket",
    )

    with pytest.raises(BackendError) as caught:
        await backend.create_bucket("photos")

    assert "***" in str(caught.value)
    assert caught.value.code == error_codes.INSUFFICIENT_FUNDS
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    everything = texts_of(caught.value) + caplog.text
    everything += "\n".join(str(r.__dict__) for r in caplog.records)
    for form in key_forms(key):
        assert form.lower() not in everything.lower()


async def test_the_private_key_is_absent_from_logs_of_a_normal_run(
    sdk: ModuleType, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    await built.create_bucket("photos")
    await built.view_bucket("photos")
    with pytest.raises(BackendError):
        await built.create_bucket("ab")
    await built.close()

    assert caplog.records, "the adapter logs something, so this test checks something"
    everything = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert key.lower() not in everything.lower()


async def test_an_sdk_setup_error_is_reported_without_the_key(
    sdk: ModuleType, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, config: Any) -> None:
        raise sdk.SDKError(f"bad config {config!r}")

    monkeypatch.setattr(sdk.SDK, "__init__", refuse)
    with pytest.raises(AkaveConfigurationError) as caught:
        AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    assert "cannot set up the Akave SDK" in str(caught.value)
    assert key not in texts_of(caught.value)


# --- lifecycle ------------------------------------------------------------------------------


async def test_close_closes_the_sdk_once_and_is_idempotent(sdk: ModuleType, key: str) -> None:
    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    await built.view_bucket("photos")

    await built.close()
    await built.close()
    await asyncio.gather(built.close(), built.close())

    assert sdk.instances[-1].close_calls == 1


async def test_concurrent_closes_close_the_sdk_once(sdk: ModuleType, key: str) -> None:
    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    await asyncio.gather(*(built.close() for _ in range(5)))
    assert sdk.instances[-1].close_calls == 1


async def test_calls_after_close_are_refused_as_unavailable(sdk: ModuleType, key: str) -> None:
    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    await built.close()
    with pytest.raises(BackendError) as caught:
        await built.view_bucket("photos")
    assert caught.value.code == error_codes.BACKEND_UNAVAILABLE
    assert "closed=True" in repr(built)


async def test_a_failing_sdk_close_still_shuts_the_backend_down(
    sdk: ModuleType, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    built = AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    sdk.fail_next(f"channel already closed {key}", method="close")
    await built.close()
    await built.close()
    assert key not in caplog.text
    assert "closing the Akave SDK failed" in caplog.text


# --- installation ---------------------------------------------------------------------------


async def test_a_missing_akavesdk_module_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setitem(sys.modules, "akavesdk", None)  # makes `import akavesdk` fail
    with pytest.raises(RuntimeError) as caught:
        AkaveSdkBackend.from_settings(make_settings(akave_private_key=key))
    assert INSTALL_HINT in str(caught.value)
    assert 'pip install "akavesdk @ git+https://github.com/akave-ai/akavesdk-py"' in str(
        caught.value
    )
    assert key not in texts_of(caught.value)


def test_the_adapter_module_imports_without_the_sdk() -> None:
    code = (
        "import sys; sys.modules['akavesdk'] = None\n"
        "import services.executor.backends.akave_sdk as m\n"
        "print(m.AkaveSdkBackend.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "AkaveSdkBackend"
