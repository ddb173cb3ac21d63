"""TEST DOUBLE for the Akave Python SDK (`akavesdk`): its bucket surface, in memory, no chain.

Same names and shapes as the real SDK's bucket calls (see /work/shared/notes/akave-sdk.md):
`SDK`, `SDKConfig`, `SDKError`, `sdk.ipc()`, `ipc.create_bucket(ctx, name)`,
`ipc.view_bucket(ctx, name)`, `sdk.close()`. No network, no signing, no crypto: the "owner" is
the key text itself and transaction hashes are random hex.

Hooks for tests (module-level, reset with `reset()`):
- `instances`: every `SDK` built, in order.
- `calls`: every call as a `Call(method, name, thread_id, thread_name)`.
- `fail_next(message, method=None)`: the next call of `method` (any call if None) raises
  `SDKError(message)`; queue several by calling it several times.
- `block_next(method)`: the next call of `method` sets `entered`, then waits for `release`
  (both `threading.Event`s, returned as a `Gate`) before doing its work.
- `buckets`: the in-memory chain, keyed by (owner, name).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

__all__ = [
    "IPC",
    "SDK",
    "Call",
    "Gate",
    "IPCBucket",
    "IPCBucketCreateResult",
    "SDKConfig",
    "SDKError",
    "block_next",
    "buckets",
    "calls",
    "fail_next",
    "instances",
    "reset",
]

BLOCK_SIZE = 1024 * 1024
MIN_BUCKET_NAME_LENGTH = 3
BUCKET_ALREADY_EXISTS = "0x497ef2c2"
GATE_TIMEOUT_S = 10.0


class SDKError(Exception):
    pass


SDKError.__module__ = "akavesdk"


@dataclass
class SDKConfig:
    address: str
    max_concurrency: int
    block_part_size: int
    use_connection_pool: bool
    parity_blocks_count: int = 0
    chunk_buffer: int = 10
    encryption_key: bytes | None = None
    private_key: str | None = None
    streaming_max_blocks_in_chunk: int = 32
    connection_timeout: int | None = 30
    max_retries: int | None = 3
    backoff_delay: int | None = 1
    ipc_address: str | None = None


@dataclass
class IPCBucketCreateResult:
    id: str
    name: str
    created_at: int


@dataclass
class IPCBucket:
    id: str
    name: str
    created_at: int


@dataclass(frozen=True)
class Call:
    method: str
    name: str | None
    thread_id: int
    thread_name: str


@dataclass
class Gate:
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Stored:
    bucket_id: str
    name: str
    created_at: int
    tx_hash: str


_lock = threading.Lock()
instances: list[SDK] = []
calls: list[Call] = []
buckets: dict[tuple[str, str], _Stored] = {}
_failures: list[tuple[str | None, str]] = []
_gates: dict[str, list[Gate]] = {}


def reset() -> None:
    with _lock:
        instances.clear()
        calls.clear()
        buckets.clear()
        _failures.clear()
        _gates.clear()


def fail_next(message: str, method: str | None = None) -> None:
    """The next call of `method` (or of anything) raises `SDKError(message)`."""
    with _lock:
        _failures.append((method, message))


def block_next(method: str) -> Gate:
    """The next call of `method` waits on the returned gate's `release` before it works."""
    gate = Gate()
    with _lock:
        _gates.setdefault(method, []).append(gate)
    return gate


def _enter(method: str, name: str | None = None) -> None:
    """Record the call, then apply any injected block or failure for it."""
    current = threading.current_thread()
    with _lock:
        calls.append(Call(method, name, threading.get_ident(), current.name))
        pending = _gates.get(method)
        gate = pending.pop(0) if pending else None
    if gate is not None:
        gate.entered.set()
        if not gate.release.wait(GATE_TIMEOUT_S):
            raise SDKError(f"test gate for {method} was never released")
    with _lock:
        for index, (wanted, message) in enumerate(_failures):
            if wanted is None or wanted == method:
                del _failures[index]
                raise SDKError(message)


class IPC:
    """The IPC API `SDK.ipc()` returns; it has no `close`."""

    def __init__(self, owner: str) -> None:
        self._owner = owner

    def create_bucket(self, ctx: object, name: str) -> IPCBucketCreateResult:
        _enter("create_bucket", name)
        if len(name) < MIN_BUCKET_NAME_LENGTH:
            raise SDKError("invalid bucket name")
        tx_hash = secrets.token_hex(32)
        with _lock:
            if (self._owner, name) in buckets:
                raise SDKError(
                    "bucket creation failed: Transaction reverted: "
                    f"('execution reverted: {BUCKET_ALREADY_EXISTS}', '{BUCKET_ALREADY_EXISTS}')"
                )
            stored = _Stored(
                bucket_id=secrets.token_hex(32),
                name=name,
                created_at=int(time.time()),
                tx_hash=tx_hash,
            )
            buckets[(self._owner, name)] = stored
        return IPCBucketCreateResult(id=tx_hash, name=name, created_at=stored.created_at)

    def view_bucket(self, ctx: object, bucket_name: str) -> IPCBucket | None:
        _enter("view_bucket", bucket_name)
        if not bucket_name:
            raise SDKError("empty bucket name")
        with _lock:
            stored = buckets.get((self._owner, bucket_name))
        if stored is None:
            return None
        return IPCBucket(id=stored.bucket_id, name=stored.name, created_at=stored.created_at)


class SDK:
    def __init__(self, config: SDKConfig) -> None:
        if config.block_part_size <= 0 or config.block_part_size > BLOCK_SIZE:
            raise SDKError(
                f"Invalid blockPartSize: {config.block_part_size}. Valid range is 1-{BLOCK_SIZE}"
            )
        if config.encryption_key and len(config.encryption_key) != 32:
            raise SDKError("Encryption key length should be 32 bytes long")
        self.config = config
        self.ipc_calls = 0
        self.close_calls = 0
        with _lock:
            instances.append(self)

    def ipc(self) -> IPC:
        """A fresh IPC API each call, like the real SDK (which dials every time)."""
        with _lock:
            self.ipc_calls += 1
        try:
            _enter("ipc")
            if not self.config.private_key:
                raise SDKError("Private key is required for IPC operations")
        except Exception as exc:
            raise SDKError(f"Failed to initialize IPC API: {exc}") from exc
        owner = self.config.private_key.lower().removeprefix("0x")
        return IPC(owner)

    def close(self) -> None:
        _enter("close")
        with _lock:
            self.close_calls += 1
