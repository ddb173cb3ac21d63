"""Run scenarios end to end: private infrastructure, the real services, load, fault, verdict.

The suite owns its dependencies so that it may stop them: a Kafka broker of its own
(`LocalKafka`, free ports), a three-broker cluster of its own for the scenarios that need one
(`LocalKafkaCluster`: replication 3, min.insync.replicas 2), a PostgreSQL cluster of its own
(`PrivatePostgres`, a temporary data directory) — never the machine's shared cluster — and an
EVM chain of its own (anvil, `LocalAnvil`, a free port). Each scenario gets a fresh database,
topic, set of service processes and copy of our Storage contract, so no scenario sees
another's buckets.
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
from localinfra.anvil import LocalAnvil
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from localinfra.kafka import LocalKafka
from localinfra.kafka_cluster import LocalKafkaCluster
from localinfra.postgres import PrivatePostgres, create_database
from shared.migrations import migrate
from shared.settings import Settings
from tests.support.stack import REPO, Stack, free_port
from tests.support.tcp_proxy import TcpProxy

# The executors' signing keys: anvil's public dev account 1 (PUBLIC TEST DATA, see
# localinfra/dev_keys.py), never a real key. The deployer is another dev account.
KEYS = (DEV_ACCOUNTS[1],)
IN_FLIGHT = 16  # transactions in flight per key (CHAIN_MAX_IN_FLIGHT), passed to the executors
SUBMIT_GIVE_UP_S = 300.0  # a name not accepted by then counts as never accepted
RECOVERY_BOUND_S = 120.0  # the API not answering normally this long after a repair: not recovered


@dataclass(frozen=True)
class Options:
    jobs: int = 1000
    outage_s: float = 20.0
    block_time_s: float = 2.0  # the chain mines a block this often
    rate: float = 10.0  # new requests a second
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    settle_s: float | None = None  # bound on waiting for all jobs to be terminal
    log_root: Path = REPO / ".local" / "chaos"

    @property
    def creates_per_s(self) -> float:
        """The chain side's best rate: each key's in-flight slots turn over once a block."""
        return len(KEYS) * IN_FLIGHT / self.block_time_s

    @property
    def settle_bound(self) -> float:
        # Draining the whole backlog at the chain's best rate, three times over, plus slack.
        return self.settle_s or 120 + 3 * self.jobs / self.creates_per_s


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    checks: list[Check]
    seconds: float
    logs: Path
    contract: str = ""  # the scenario's Storage contract on the suite's chain

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class Infra:
    """The suite's own broker and, if a scenario needs it, three-broker cluster; PostgreSQL
    cluster (which the postgres-outage scenario stops) and chain (anvil mining a block every
    `block_time_s`), started once per run, in a fresh folder each, removed afterwards."""

    def __init__(self, block_time_s: float, *, broker: bool = True, cluster: bool = False) -> None:
        name = f"chaos-{os.getpid()}"
        self.kafka = LocalKafka(
            REPO, name=name, port=free_port(), controller_port=free_port(), fresh=True
        )
        self.broker = broker
        self.cluster = LocalKafkaCluster(REPO, name=f"{name}-cluster") if cluster else None
        self.postgres = PrivatePostgres(free_port())
        self.chain = LocalAnvil(REPO, name=name, block_time=block_time_s, fresh=True)

    def kafka_for(self, scenario: Scenario) -> tuple[str, int]:
        """The bootstrap servers a scenario's services use, and its topics' replication."""
        if scenario.cluster:
            assert self.cluster is not None, f"{scenario.name} needs the cluster"
            return self.cluster.bootstrap_servers, len(self.cluster.nodes)
        return self.kafka.bootstrap_servers, 1

    def __enter__(self) -> Infra:
        try:
            self.postgres.start()
            shutil.rmtree(self.chain.dir, ignore_errors=True)
            self.chain.start()
            if self.broker:
                self.kafka.start()
            if self.cluster is not None:
                self.cluster.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.kafka.is_running():
                self.kafka.stop()
            shutil.rmtree(self.kafka.dir, ignore_errors=True)
            if self.cluster is not None:
                self.cluster.destroy()
        finally:
            try:
                if self.chain.is_running():
                    self.chain.stop()
                shutil.rmtree(self.chain.dir, ignore_errors=True)
            finally:
                self.postgres.destroy()


def key_pool_file(logs: Path) -> Path:
    """The executors' key pool, one key a line, readable by the owner only (0600). The keys
    are anvil's public dev keys (public test data), never real ones."""
    pool = logs / "key-pool"
    pool.touch(mode=0o600)
    pool.chmod(0o600)
    pool.write_text("".join(key + "\n" for _, key in KEYS))
    return pool


def scenario_settings(infra: Infra, scenario: Scenario, logs: Path, rpc_url: str) -> Settings:
    """Settings of one scenario's services: a fresh database and a fresh Storage contract,
    the chain reached at `rpc_url` (anvil, or a proxy in front of it), its topics on the one
    broker or the cluster."""
    db_name = f"chaos_{scenario.name.replace('-', '_')}"
    bootstrap, replicas = infra.kafka_for(scenario)
    url = create_database(infra.postgres.admin_url, db_name)
    migrate(Settings(_env_file=None, database_url=url))
    base = Settings(
        _env_file=None,
        database_url=url,
        akave_backend="evm",
        chain_rpc_url=rpc_url,
        chain_contract_address=deploy_storage(infra.chain),
        chain_key_pool_file=key_pool_file(logs),
        chain_max_in_flight=IN_FLIGHT,
        chain_poll_interval_s=0.2,  # a new block is seen within 0.2 s
        kafka_bootstrap_servers=bootstrap,
        topic_partitions=3,
        topic_replication_factor=replicas,  # min.insync.replicas follows: 2 of 3
        # The smallest allowed: a dead executor's partitions move soonest.
        executor_session_timeout_ms=6000,
        log_level="INFO",
    )
    return Stack.settings_for(base)


async def run_scenario(infra: Infra, options: Options, scenario: Scenario, logs: Path) -> Result:
    started = time.monotonic()
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    proxy = None
    rpc_url = infra.chain.rpc_url
    if scenario.rpc_proxy:  # the services' chain RPC goes through it; the suite's reads do not
        proxy = TcpProxy("127.0.0.1", infra.chain.port, free_port())
        proxy.start()
        rpc_url = f"http://127.0.0.1:{proxy.port}"
    try:
        settings = await asyncio.to_thread(scenario_settings, infra, scenario, logs, rpc_url)
        stack = Stack(settings, logs)
        tag = f"{scenario.name}-{uuid.uuid4().hex[:6]}"
        names = [f"{tag}-{i:05d}" for i in range(options.jobs)]
        recorder = Recorder()
        load = Load(stack.base_url, names, options.rate, recorder)
        prober = Prober(stack.base_url, tag, load, recorder)
        target = Target(
            stack,
            infra.kafka,
            infra.cluster,
            infra.postgres,
            infra.chain,
            proxy,
            settings,
            options.outage_s,
        )
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
            bound = options.settle_bound
            settled_at = await _wait_terminal(settings, list(accepted.values()), bound)
            stack.assert_alive()
            ours = set(names) | set(prober.accepted)
            owners = [address for address, _ in KEYS]
            evidence = await gather(settings, infra.chain, ours, owners)
        finally:
            await asyncio.to_thread(stack.stop)
    finally:
        if proxy is not None:
            proxy.stop()
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
        checks += extra(evidence, outcome, logs)
    contract = settings.chain_contract_address
    return Result(scenario, checks, time.monotonic() - started, logs, contract)


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
    chosen = [SCENARIOS[name] for name in options.scenarios]
    broker = any(not s.cluster for s in chosen)
    cluster = any(s.cluster for s in chosen)
    with Infra(options.block_time_s, broker=broker, cluster=cluster) as infra:
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
