"""The fault suite's short form: every scenario of `chaos/`, small N and short outages.

The same code and the same invariants as the full run (`make chaos`, docs/reliability.md):
real api, executor(s) and projector processes on a Kafka broker and a PostgreSQL cluster of
the suite's own (which it stops and starts), with the simulated chain at 50 ms a transaction.
"""

from __future__ import annotations

import os

import pytest

from chaos.report import conditions, summary, table
from chaos.suite import Options, run

pytestmark = pytest.mark.slow

SHORT = Options(jobs=60, outage_s=6.0, latency_ms=50, rate=20.0)


async def test_every_scenario_keeps_every_invariant() -> None:
    print("\n" + conditions(SHORT, os.getloadavg()))
    results = await run(SHORT, lambda result: print(table(result)))
    print(summary(results))
    failed = [
        f"{r.scenario.name}: {c.name}: {c.detail}" for r in results for c in r.checks if not c.ok
    ]
    assert not failed, "\n".join(failed)
