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


def _killed_executor_had_work(evidence: Evidence, window: Window, logs: Path) -> list[Check]:
    """The killed executor really held partitions and ran jobs, so its partitions had to move."""
    text = (logs / "executor:2.log").read_text(errors="replace")
    finished = text.count("job finished")
    assigned = "partitions assigned" in text
    return [
        Check(
            "killed executor had partitions",
            assigned and finished > 0,
            f"it finished {finished} jobs before SIGKILL; survivor took its partitions",
        )
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("kill-api", "SIGKILL the api mid-load, restart", faults.kill_and_restart("api")),
        Scenario(
            "kill-executor",
            "SIGKILL the executor mid-load, restart",
            faults.kill_and_restart("executor"),
        ),
        Scenario(
            "kill-projector",
            "SIGKILL the projector mid-load, restart",
            faults.kill_and_restart("projector"),
        ),
        Scenario(
            "executor-failover",
            "two executors in one group, one SIGKILLed for good",
            faults.kill_for_good("executor:2", after_log="job finished"),
            services=("projector", "executor", "executor:2", "api"),
            extra=[_killed_executor_had_work],
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
            "poison",
            "bad JSON, unknown type, wrong schema version injected mid-load",
            faults.inject_poison,
            extra=[_poison_parked],
        ),
    ]
}
