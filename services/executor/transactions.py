"""One transaction at a time per signing key, and "nonce too low" retried on the spot.

The SDK takes the nonce from the account's transaction count and has no nonce manager, so two
transactions in flight from one key collide. Inside a process a lock serialises them; across
processes (or after an abandoned attempt) the chain refuses the second with "nonce too low",
which is retried here with a short jittered backoff instead of costing the job an attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.executor.errors import BackendError
from shared import error_codes

T = TypeVar("T")


class TransactionGate:
    def __init__(self, nonce_retries: int, backoff_s: float = 0.2) -> None:
        self._lock = asyncio.Lock()
        self._retries = nonce_retries
        self._backoff = backoff_s

    async def send(
        self, transaction: Callable[[], Awaitable[T]], timeout: float | None = None
    ) -> T:
        """Run `transaction` when the key is free; `timeout` bounds each try once it has the key
        (the wait for the key's turn is not bounded here: it is the queue, not the chain)."""
        for attempt in range(self._retries + 1):
            async with self._lock:
                try:
                    async with asyncio.timeout(timeout):
                        return await transaction()
                except BackendError as exc:
                    if exc.code != error_codes.NONCE_CONFLICT or attempt == self._retries:
                        raise
            await asyncio.sleep(self._backoff * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")
