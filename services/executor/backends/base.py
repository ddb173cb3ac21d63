"""What the executor needs from a chain: look a bucket up, create one, and typed failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.executor import errors


@dataclass(frozen=True)
class ChainBucket:
    name: str
    bucket_id: str | None = None
    created_at: int | None = None


@dataclass(frozen=True)
class CreatedBucket:
    """`tx_hash` as the backend returned it; events normalise it."""

    tx_hash: str
    name: str
    bucket_id: str | None = None
    created_at: int | None = None


class BackendError(Exception):
    """A failed chain call with a stable `code` and whether trying again can help."""

    def __init__(self, message: str, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        guessed_code, guessed_retryable = errors.classify(message)
        self.code = code or guessed_code
        self.retryable = guessed_retryable if retryable is None else retryable


class AkaveBackend(Protocol):
    async def view_bucket(self, name: str) -> ChainBucket | None: ...

    async def create_bucket(self, name: str) -> CreatedBucket: ...

    async def close(self) -> None: ...
