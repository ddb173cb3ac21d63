"""The Akave backend on the real Python SDK (`akavesdk`, installed from Git, not from PyPI).

The SDK is blocking, so every call runs in this backend's own bounded thread pool and never on
the event loop. The IPC connection (`sdk.ipc()`, which dials with retries and sleeps) is made on
first use, in a worker thread, exactly once. Every exception the SDK raises becomes a
`BackendError` whose text is the SDK's, with the signing key masked, so `errors.classify`
decides the code and whether another attempt can help.

Nonces are not handled here: the caller serialises transactions per key (`TransactionGate`).
A call that the caller abandons (timeout, cancellation) keeps running in its thread until the
SDK returns; a transaction it sent may still be mined.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from services.executor import errors
from services.executor.backends.base import BackendError, ChainBucket, CreatedBucket
from services.executor.errors import AkaveConfigurationError

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "akavesdk @ git+https://github.com/akave-ai/akavesdk-py"'
MASK = "***"

_T = TypeVar("_T")


def import_sdk() -> Any:
    """The `akavesdk` module, or an error that says how to install it."""
    try:
        import akavesdk
    except ImportError as exc:
        raise AkaveConfigurationError(
            f"AKAVE_BACKEND=akave needs the Akave Python SDK, which cannot be imported ({exc}). "
            f"It is not on PyPI; install the optional extra with: {INSTALL_HINT}"
        ) from exc
    return akavesdk


class _Scrubber:
    """Masks one secret in text, with or without a `0x` prefix, in any letter case."""

    def __init__(self, secret: str) -> None:
        body = secret.strip()
        if body[:2].lower() == "0x":
            body = body[2:]
        self._pattern = re.compile("(?:0x)?" + re.escape(body), re.IGNORECASE) if body else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __repr__(self) -> str:
        return "_Scrubber(***)"


def _unix_seconds(value: Any) -> int | None:
    """Block time as Unix seconds; the SDK types it `datetime | float | int` and uses 0 for none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        seconds = int(value.timestamp())
    else:
        try:
            seconds = int(value)
        except (TypeError, ValueError):
            return None
    return seconds or None


class AkaveSdkBackend:
    """`AkaveBackend` on the Akave Python SDK; build it with `from_settings`, then `close()` it."""

    def __init__(
        self,
        sdk: Any,
        *,
        private_key: str,
        max_workers: int,
        node_address: str = "",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._sdk = sdk
        self._scrub = _Scrubber(private_key)
        self._node_address = node_address
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="akave-sdk")
        self._ipc: Any = None
        self._dial_lock = threading.Lock()
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AkaveSdkBackend:
        """A backend for `settings`; raises `AkaveConfigurationError` if it cannot be built."""
        try:
            key = settings.private_key()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise AkaveConfigurationError(
                f"cannot read the Akave signing key from AKAVE_PRIVATE_KEY_FILE "
                f"({settings.akave_private_key_file}): {reason}"
            ) from None
        if not key:
            raise AkaveConfigurationError(
                "AKAVE_BACKEND=akave needs a signing key: set AKAVE_PRIVATE_KEY, or set "
                "AKAVE_PRIVATE_KEY_FILE to a file that holds it"
            )
        akavesdk = import_sdk()
        try:
            config = akavesdk.SDKConfig(
                address=settings.akave_node_address,
                max_concurrency=settings.akave_max_concurrency,
                block_part_size=settings.akave_block_part_size,
                use_connection_pool=settings.akave_use_connection_pool,
                private_key=key,
                connection_timeout=settings.akave_connection_timeout_s,
            )
            sdk = akavesdk.SDK(config)
        except Exception as exc:
            failure = _Scrubber(key)(str(exc) or type(exc).__name__)
        else:
            return cls(
                sdk,
                private_key=key,
                max_workers=settings.akave_max_concurrency,
                node_address=settings.akave_node_address,
            )
        # Outside the handler, so the original (whose text may hold the key) is not chained.
        raise AkaveConfigurationError(f"cannot set up the Akave SDK: {failure}")

    def __repr__(self) -> str:
        return (
            f"AkaveSdkBackend(node_address={self._node_address!r}, "
            f"max_workers={self._max_workers}, connected={self._ipc is not None}, "
            f"closed={self._closed})"
        )

    async def view_bucket(self, name: str) -> ChainBucket | None:
        found = await self._call("view_bucket", lambda ipc: ipc.view_bucket(None, name))
        if found is None:
            return None
        return ChainBucket(
            name=getattr(found, "name", None) or name,
            bucket_id=str(getattr(found, "id", None) or "") or None,
            created_at=_unix_seconds(getattr(found, "created_at", None)),
        )

    async def create_bucket(self, name: str) -> CreatedBucket:
        result = await self._call("create_bucket", lambda ipc: ipc.create_bucket(None, name))
        return CreatedBucket(
            tx_hash=str(result.id),
            name=getattr(result, "name", None) or name,
            bucket_id=None,
            created_at=_unix_seconds(getattr(result, "created_at", None)),
        )

    async def close(self) -> None:
        """Close the SDK's channels (in a worker thread), then the thread pool. Idempotent."""
        self._closed = True
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._sdk.close)
        except Exception as exc:
            log.warning("closing the Akave SDK failed: %s", self._scrub(str(exc)))
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, operation: str, call: Callable[[Any], _T]) -> _T:
        """`call(ipc)` in a worker thread; any failure comes back as a scrubbed `BackendError`."""
        if self._closed:
            raise BackendError(
                "the Akave backend is closed", code=errors.BACKEND_UNAVAILABLE, retryable=True
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._in_thread, call)
        except Exception as exc:  # every SDKError, and anything else the SDK lets out
            raw = str(exc) or type(exc).__name__
            message = self._scrub(raw)
            error = BackendError(message)
            log.debug(
                "akave %s failed: %s",
                operation,
                message,
                extra={"error_code": error.code, "retryable": error.retryable},
            )
            if message == raw:
                raise error from exc
        # The SDK's text held the key: raise outside the handler so no chained exception
        # (and no traceback that prints it) carries the original message.
        raise error

    def _in_thread(self, call: Callable[[Any], _T]) -> _T:
        return call(self._connected_ipc())

    def _connected_ipc(self) -> Any:
        """The IPC API, dialled on first use; a failed dial is not remembered, so it is retried."""
        ipc = self._ipc
        if ipc is None:
            with self._dial_lock:
                if self._ipc is None:
                    log.info("dialling the Akave IPC node", extra={"node": self._node_address})
                    self._ipc = self._sdk.ipc()
                ipc = self._ipc
        return ipc
