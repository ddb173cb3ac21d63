"""A counted limit on one key's transactions in flight: new creates wait for room, a resumed
transaction (already signed before a restart) is counted without waiting."""

from __future__ import annotations

import asyncio
from collections import deque


class InFlightSlots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        while self.used >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += 1

    def take(self) -> None:
        self.used += 1

    def release(self) -> None:
        self.used -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
