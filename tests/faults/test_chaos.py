"""The fault suite's short form: every scenario of `chaos/`, small N and short outages.

The same code and the same invariants as the full run (`make chaos`, docs/reliability.md):
real api, executor(s) and projector processes on a Kafka broker (or, for the cluster
scenarios, three brokers with replication 3 and min.insync.replicas 2), a PostgreSQL cluster
and an anvil chain of the suite's own (which it stops, starts and cuts off), the chain itself
the witness of one create per name. Blocks come every 1 s rather than the full run's 2 s: each
scenario waits on the chain several times (deploying its contract, the kill waiting for
transactions in flight, draining the backlog), so 2 s blocks would make this CI test about a
third longer; one key's 16 slots still turn over slower than the load arrives (16/s < 20/s),
so the lane stays busy and the kills strike with transactions in flight.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from chaos.report import conditions, summary, table
from chaos.scenarios import SCENARIOS
from chaos.suite import Options, run

pytestmark = pytest.mark.slow

ONE_BROKER = tuple(name for name, s in SCENARIOS.items() if not s.cluster)
CLUSTER = tuple(name for name, s in SCENARIOS.items() if s.cluster)
SHORT = Options(jobs=60, outage_s=6.0, block_time_s=1.0, rate=20.0)


@pytest.mark.parametrize(
    "scenarios",
    [pytest.param(ONE_BROKER, id="one-broker"), pytest.param(CLUSTER, id="three-brokers")],
)
async def test_every_scenario_keeps_every_invariant(scenarios: tuple[str, ...]) -> None:
    options = replace(SHORT, scenarios=scenarios)
    print("\n" + conditions(options, os.getloadavg()))
    results = await run(options, lambda result: print(table(result)))
    print(summary(results))
    failed = [
        f"{r.scenario.name}: {c.name}: {c.detail}" for r in results for c in r.checks if not c.ok
    ]
    assert not failed, "\n".join(failed)
