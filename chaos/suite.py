"""Run scenarios end to end: private infrastructure, the real services, load, fault, verdict.

The suite owns its dependencies so that it may stop them: a Kafka broker of its own
(`LocalKafka`, free ports) and a PostgreSQL cluster of its own (`PrivatePostgres`, a temporary
data directory) — never the machine's shared cluster. Each scenario gets a fresh database and
topic and a fresh set of service processes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaos.checks import Check, Outcome, invariants
from chaos.evidence import gather, terminal_in_read_model
from chaos.faults import Target
from chaos.scenarios import SCENARIOS, Scenario
from chaos.traffic import Load, Prober, Recorder
from localinfra.kafka import LocalKafka
from localinfra.postgres import PrivatePostgres, create_database
from shared.migrations import migrate
from shared.settings import Settings
from tests.support.stack import REPO, Stack, free_port

SUBMIT_GIVE_UP_S = 300.0  # a name not accepted by then counts as never accepted
RECOVERY_BOUND_S = 120.0  # the API not answering normally this long after a repair: not recovered


@dataclass(frozen=True)
class Options:
    jobs: int = 1000
    outage_s: float = 20.0
    latency_ms: int = 100
    rate: float = 10.0  # new requests a second
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    settle_s: float | None = None  # bound on waiting for all jobs to be terminal
    log_root: Path = REPO / ".local" / "chaos"

    @property
    def settle_bound(self) -> float:
        # Draining the backlog takes ~jobs x latency (one transaction at a time per key).
        return self.settle_s or 120 + 3 * self.jobs * self.latency_ms / 1000


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    checks: list[Check]
    seconds: float
    logs: Path

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class Infra:
    """The suite's own broker and database clusters, started once per run: the gateway's
    PostgreSQL (which the postgres-outage scenario stops), and another for the simulated
    chain, which with the real Akave backend is not in the gateway's database either."""

    def __init__(self) -> None:
        self.kafka = LocalKafka(
            REPO,
            name=f"chaos-{os.getpid()}",
            port=free_port(),
            controller_port=free_port(),
            fresh=True,
        )
        self.postgres = PrivatePostgres(free_port())
        self.chain = PrivatePostgres(free_port())

    def __enter__(self) -> Infra:
        try:
            self.postgres.start()
            self.chain.start()
            self.kafka.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.kafka.is_running():
                self.kafka.stop()
            shutil.rmtree(self.kafka.dir, ignore_errors=True)
        finally:
            self.postgres.destroy()
            self.chain.destroy()


def scenario_settings(infra: Infra, options: Options, name: str) -> Settings:
    db_name = f"chaos_{name.replace('-', '_')}"
    url = create_database(infra.postgres.admin_url, db_name)
    migrate(Settings(_env_file=None, database_url=url))
    base = Settings(
        _env_file=None,
        database_url=url,
        akave_backend="simulated",  # the fault suite still witnesses on the simulated chain
        sim_database_url=create_database(infra.chain.admin_url, db_name),
        kafka_bootstrap_servers=infra.kafka.bootstrap_servers,
        topic_partitions=3,
        sim_latency_ms=options.latency_ms,
        # The smallest allowed: a dead executor's partitions move soonest.
        executor_session_timeout_ms=6000,
        log_level="INFO",
    )
    return Stack.settings_for(base)


async def run_scenario(infra: Infra, options: Options, scenario: Scenario, logs: Path) -> Result:
    started = time.monotonic()
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    settings = await asyncio.to_thread(scenario_settings, infra, options, scenario.name)
    stack = Stack(settings, logs)
    tag = f"{scenario.name}-{uuid.uuid4().hex[:6]}"
    names = [f"{tag}-{i:05d}" for i in range(options.jobs)]
    recorder = Recorder()
    load = Load(stack.base_url, names, options.rate, recorder)
    prober = Prober(stack.base_url, tag, load, recorder)
    target = Target(stack, infra.kafka, infra.postgres, settings, options.outage_s)
    try:
        await asyncio.to_thread(stack.start, *scenario.services)
        stop_probe = asyncio.Event()
        probing = asyncio.create_task(prober.run(stop_probe))
        loading = asyncio.create_task(load.run(SUBMIT_GIVE_UP_S))
        while len(load.accepted) < options.jobs // 2 and not loading.done():
            await asyncio.sleep(0.1)
        window = await scenario.fault(target)
        await loading
        await _until_answering(recorder, window.repaired, RECOVERY_BOUND_S)
        stop_probe.set()
        await probing
        accepted = {**load.accepted, **prober.accepted}
        settled_at = await _wait_terminal(settings, list(accepted.values()), options.settle_bound)
        stack.assert_alive()
        evidence = await gather(settings)
    finally:
        await asyncio.to_thread(stack.stop)
    outcome = Outcome(
        names=options.jobs,
        accepted=accepted,
        probe_accepted=len(prober.accepted),
        never_accepted=load.never_accepted,
        answers=recorder.answers,
        window=window,
        settled_at=settled_at,
        expected_503=scenario.expected_503,
    )
    checks = invariants(outcome, evidence)
    for extra in scenario.extra:
        checks += extra(evidence, window, logs)
    return Result(scenario, checks, time.monotonic() - started, logs)


async def _until_answering(recorder: Recorder, since: float, bound: float) -> None:
    """Keep probing until the API has answered 200 to /health and 202 to a POST since the
    repair (or `bound` s passed): the probe's record then times the recovery."""
    while time.monotonic() < since + bound:
        fresh = [a for a in recorder.answers if a.source == "probe" and a.at >= since]
        if any(a.path == "/health" and a.status == 200 for a in fresh) and any(
            a.method == "POST" and a.status == 202 for a in fresh
        ):
            return
        await asyncio.sleep(0.2)


async def _wait_terminal(settings: Settings, job_ids: list[str], bound: float) -> float | None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if await asyncio.to_thread(terminal_in_read_model, settings, job_ids) == len(job_ids):
            return time.monotonic()
        await asyncio.sleep(0.5)
    return None


async def run(options: Options, report: Callable[[Result], None] | None = None) -> list[Result]:
    run_dir = options.log_root / time.strftime("%Y%m%dT%H%M%S")
    results = []
    with Infra() as infra:
        for name in options.scenarios:
            scenario, logs, started = SCENARIOS[name], run_dir / name, time.monotonic()
            try:
                result = await run_scenario(infra, options, scenario, logs)
            except Exception as exc:  # one broken scenario must not hide the others' verdicts
                crash = Check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
                result = Result(scenario, [crash], time.monotonic() - started, logs)
            results.append(result)
            if report is not None:
                report(result)
    return results
