"""The scenarios: which services run, which fault strikes mid-load, what else must hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos import faults
from chaos.checks import Check
from chaos.evidence import Evidence
from chaos.faults import Fault, Window
from shared.dead_letter import CONSUMER, ORIGIN_OFFSET, ORIGIN_PARTITION

ALL_SERVICES = ("projector", "executor", "api")
Extra = Callable[[Evidence, Window, Path], list[Check]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: Fault
    services: tuple[str, ...] = ALL_SERVICES
    expected_503: bool = False  # a dependency is down: the API must say 503 meanwhile
    rpc_proxy: bool = False  # the services reach the chain through a proxy the fault can cut
    extra: list[Extra] = field(default_factory=list)


def _poison_parked(evidence: Evidence, window: Window, logs: Path) -> list[Check]:
    """Both consumers parked exactly the unreadable records; the unknown type was skipped."""
    want = sorted(window.poison_offsets)
    by: dict[str, list[tuple[int, int]]] = {}
    for headers in evidence.parked:
        origin = (int(headers[ORIGIN_PARTITION]), int(headers[ORIGIN_OFFSET]))
        by.setdefault(headers[CONSUMER], []).append(origin)
    ok = all(sorted(by.get(c, [])) == want for c in ("executor", "projector"))
    ok = ok and evidence.unknown_records == 1 and evidence.malformed_records == len(want)
    detail = (
        f"{len(want)} unreadable parked by executor {len(by.get('executor', []))}, "
        f"projector {len(by.get('projector', []))}; {evidence.unknown_records} unknown-type "
        "skipped"
    )
    return [Check("poison parked, consumers went on", ok, detail)]


def _killed_with_transactions_in_flight(
    evidence: Evidence, window: Window, logs: Path
) -> list[Check]:
    """The executor died with transactions of ours sent and not yet mined."""
    n = window.in_flight_at_kill or 0
    return [
        Check(
            "killed with transactions in flight",
            n > 0,
            f"{n} of our transactions in the chain's mempool at the SIGKILL of {window.killed}",
        )
    ]


def _standby_took_over(evidence: Evidence, window: Window, logs: Path) -> list[Check]:
    """The killed executor held the key pool and ran jobs; the standby then took both over."""
    killed = window.killed or ""
    text = (logs / f"{killed}.log").read_text(errors="replace")
    finished = text.count("job finished")
    held = faults.HOLDS_KEYS in text and "partitions assigned" in text
    survivors = [p for p in logs.glob("executor*.log") if p.stem != killed]
    took = [
        p.stem
        for p in survivors
        if faults.HOLDS_KEYS in (t := p.read_text(errors="replace")) and "job finished" in t
    ]
    return [
        Check(
            "killed signer had work, standby took over",
            held and finished > 0 and bool(took),
            f"{killed} held the keys and partitions and finished {finished} jobs before SIGKILL; "
            f"{', '.join(took) or 'no standby'} then took the keys and finished jobs",
        )
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("kill-api", "SIGKILL the api mid-load, restart", faults.kill_and_restart("api")),
        Scenario(
            "kill-executor",
            "SIGKILL the executor mid-load with transactions in flight, restart",
            faults.kill_and_restart("executor"),
            extra=[_killed_with_transactions_in_flight],
        ),
        Scenario(
            "kill-projector",
            "SIGKILL the projector mid-load, restart",
            faults.kill_and_restart("projector"),
        ),
        Scenario(
            "executor-failover",
            "two executors on one key pool, the signer SIGKILLed for good, the standby takes over",
            faults.kill_signer_for_good(("executor", "executor:2")),
            services=("projector", "executor", "executor:2", "api"),
            extra=[_killed_with_transactions_in_flight, _standby_took_over],
        ),
        Scenario(
            "kafka-outage",
            "Kafka broker stopped mid-load, then started",
            faults.stop_kafka,
            expected_503=True,
        ),
        Scenario(
            "postgres-outage",
            "PostgreSQL stopped mid-load, then started",
            faults.stop_postgres,
            expected_503=True,
        ),
        Scenario(
            "rpc-outage",
            "the executors' chain RPC cut mid-load, then restored",
            faults.cut_chain_rpc,
            rpc_proxy=True,
        ),
        Scenario(
            "poison",
            "bad JSON, unknown type, wrong schema version injected mid-load",
            faults.inject_poison,
            extra=[_poison_parked],
        ),
    ]
}
