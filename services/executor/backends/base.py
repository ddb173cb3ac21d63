"""What the executor needs from a chain: look a bucket up, create one, and typed failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.executor.errors import BackendError as BackendError  # part of the interface


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


class AkaveBackend(Protocol):
    async def view_bucket(self, name: str) -> ChainBucket | None: ...

    async def create_bucket(self, name: str) -> CreatedBucket: ...

    async def close(self) -> None: ...
