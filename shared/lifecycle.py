"""Clean shutdown: SIGTERM and SIGINT set an event the running service watches."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT delivered to this process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def run_service(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run one service's main coroutine until it returns or a signal asks it to stop."""

    async def main() -> None:
        await service(stop_on_signals())

    asyncio.run(main())
