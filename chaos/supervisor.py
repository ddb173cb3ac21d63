"""A supervisor for the scenario's executors, as systemd or Kubernetes would be in production.

An executor that loses its keys' fence (PostgreSQL unreachable while it signs) exits nonzero
by design so that a supervisor starts it again, as a standby (services/executor/chain/fence.py).
Only that exit is restarted: any other exit of any service still fails the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from tests.support.stack import Stack

FENCE_LOST = "SignerFenceLost"  # the executor's last words when it exits for a lost fence
RESTART_AFTER_S = 1.0  # as a supervisor's restart delay


async def supervise(stack: Stack, restarts: Counter[str], stop: asyncio.Event) -> None:
    """Until `stop`, restart every executor that exited for a lost fence; count them."""
    while not stop.is_set():
        for name, proc in list(stack.procs.items()):
            if name.partition(":")[0] != "executor" or proc.poll() is None:
                continue
            if FENCE_LOST not in stack.logs(name, tail=20):
                continue  # not ours to hide: assert_alive reports it
            await asyncio.sleep(RESTART_AFTER_S)
            if stack.procs.get(name) is proc:
                del stack.procs[name]
                stack.start(name)
                restarts[name] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
