"""SIGTERM and SIGINT that arrive while a service is still importing and starting.

Until its event loop runs, a service has no handler, and the default action kills it (exit
-15): a supervisor that stops a service right after starting it would see a crash, and the
service would skip its clean shutdown. `hold()` records such a signal instead;
`shared.lifecycle.stop_on_signals` then sets the stop event at once, so the service stops
cleanly as soon as it can.
"""

from __future__ import annotations

import signal
from types import FrameType

_held: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def hold() -> None:
    """Record SIGTERM and SIGINT from now on, until an event loop installs its handlers."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _record)


def held() -> bool:
    """Whether a signal arrived while held."""
    return bool(_held)
