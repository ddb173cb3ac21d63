"""What the executor needs from a chain: look a bucket up, create one.

A backend reports a failed call as `services.executor.errors.BackendError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from services.executor.chain.records import Attempt, Journal


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
    block_number: int | None = None


class AkaveBackend(Protocol):
    async def view_bucket(self, name: str) -> ChainBucket | None: ...

    async def create_bucket(self, name: str) -> CreatedBucket: ...

    async def close(self) -> None: ...


@runtime_checkable
class RecordingBackend(Protocol):
    """A backend whose creates are signed transactions the job flow records in the log before
    they are broadcast (`evm`), followed to their outcome however long that takes."""

    async def view_bucket(self, name: str) -> ChainBucket | None: ...

    async def create_bucket(
        self, name: str, journal: Journal, job: Hashable | None = None
    ) -> CreatedBucket: ...

    def follow_create(
        self, attempts: Sequence[Attempt], journal: Journal
    ) -> Awaitable[CreatedBucket]: ...

    async def close(self) -> None: ...
