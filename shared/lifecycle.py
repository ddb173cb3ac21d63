"""Clean shutdown: SIGTERM and SIGINT set an event the running service watches."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError

from shared import signals
from shared.errors import RestartNeeded

log = logging.getLogger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT delivered to this process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if signals.held():  # it came while the service was starting
        stop.set()
    return stop


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


# Failures of a dependency (broker, database, network) that a restart can outlive, and a
# service's own request for one.
OUTAGES: tuple[type[BaseException], ...] = (
    KafkaError,
    DBAPIError,
    OSError,
    TimeoutError,
    RestartNeeded,
)


def run_service(
    service: Callable[[asyncio.Event], Awaitable[None]], *, restart_on_outage: bool = True
) -> None:
    """Run one service's main coroutine until it returns or a signal asks it to stop.

    When a dependency is down (at start-up, or so long that the service gave up), the service
    is started again with a growing delay instead of exiting: it recovers by itself once the
    dependency is back. Any other error (a bad setting, a bug) ends the process.
    """

    async def main() -> None:
        stop = stop_on_signals()
        delay = 1.0
        while not stop.is_set():
            try:
                await service(stop)
                return
            except OUTAGES as exc:
                if not restart_on_outage:
                    raise
                log.warning(
                    "dependency unavailable; restarting the service",
                    extra={"error": repr(exc)[:500], "retry_in_s": delay},
                )
            if await wait_or_stop(stop, delay):
                return
            delay = min(delay * 2, 30.0)

    asyncio.run(main())
