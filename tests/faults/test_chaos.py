"""The fault suite's short form: every scenario of `chaos/`, small N and short outages.

The same code and the same invariants as the full run (`make chaos`, docs/reliability.md):
real api, executor(s) and projector processes on a Kafka broker, a PostgreSQL cluster and an
anvil chain of the suite's own (which it stops, starts and cuts off), the chain itself the
witness of one create per name. Blocks come every 1 s rather than the full run's 2 s: each
scenario waits on the chain several times (deploying its contract, the kill waiting for
transactions in flight, draining the backlog), so 2 s blocks would make this CI test about a
third longer; one key's 16 slots still turn over slower than the load arrives (16/s < 20/s),
so the lane stays busy and the kills strike with transactions in flight.
"""

from __future__ import annotations

import os

import pytest

from chaos.report import conditions, summary, table
from chaos.suite import Options, run

pytestmark = pytest.mark.slow

SHORT = Options(jobs=60, outage_s=6.0, block_time_s=1.0, rate=20.0)


async def test_every_scenario_keeps_every_invariant() -> None:
    print("\n" + conditions(SHORT, os.getloadavg()))
    results = await run(SHORT, lambda result: print(table(result)))
    print(summary(results))
    failed = [
        f"{r.scenario.name}: {c.name}: {c.detail}" for r in results for c in r.checks if not c.ok
    ]
    assert not failed, "\n".join(failed)
