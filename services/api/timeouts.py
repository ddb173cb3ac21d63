"""The time bound on the API's calls to Postgres and Kafka: a timeout becomes a fast 503."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar


class HasTimeout(Protocol):
    _timeout: float  # seconds one call may take


S = TypeVar("S", bound=HasTimeout)
P = ParamSpec("P")
R = TypeVar("R")


def bounded(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Raise `TimeoutError` when the method takes longer than its object's `_timeout`."""

    @functools.wraps(method)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with asyncio.timeout(self._timeout):  # unlike wait_for, no task per call
            return await method(self, *args, **kwargs)

    return call
