"""The scenarios: which services run, which fault strikes mid-load, what else must hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos import faults
from chaos.checks import Check, Outcome
from chaos.evidence import Evidence
from chaos.faults import Fault, Window
from shared.dead_letter import CONSUMER, ORIGIN_OFFSET, ORIGIN_PARTITION

ALL_SERVICES = ("projector", "executor", "api")
Extra = Callable[[Evidence, Outcome, Path], list[Check]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: Fault
    services: tuple[str, ...] = ALL_SERVICES
    expected_503: bool = False  # a dependency is down: the API must say 503 meanwhile
    rpc_proxy: bool = False  # the services reach the chain through a proxy the fault can cut
    cluster: bool = False  # on the three-broker cluster (replication 3, min.insync 2), not one
    extra: list[Extra] = field(default_factory=list)


def _poison_parked(evidence: Evidence, outcome: Outcome, logs: Path) -> list[Check]:
    """Both consumers parked exactly the unreadable records; the unknown type was skipped."""
    window = outcome.window
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
    evidence: Evidence, outcome: Outcome, logs: Path
) -> list[Check]:
    """The executor died with transactions of ours sent and not yet mined."""
    window = outcome.window
    n = window.in_flight_at_kill or 0
    return [
        Check(
            "killed with transactions in flight",
            n > 0,
            f"{n} of our transactions in the chain's mempool at the SIGKILL of {window.killed}",
        )
    ]


def _standby_took_over(evidence: Evidence, outcome: Outcome, logs: Path) -> list[Check]:
    """The killed executor held the key pool and ran jobs; the standby then took both over."""
    window = outcome.window
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


def _replicated(evidence: Evidence, outcome: Outcome, logs: Path) -> list[Check]:
    """The event topic was created for the cluster: three replicas of each partition, all in
    sync when the fault struck, and min.insync.replicas 2 set on the topic."""
    window = outcome.window
    found = window.layout
    ok = (
        found is not None
        and found.min_insync_replicas == 2
        and found.min_insync_set_on_topic
        and all(len(p.replicas) == 3 and len(p.in_sync) == 3 for p in found.partitions)
    )
    if found is None:
        detail = "no layout recorded"
    else:
        replicas = sorted({len(p.replicas) for p in found.partitions})
        in_sync = sorted({len(p.in_sync) for p in found.partitions})
        where = "set on the topic" if found.min_insync_set_on_topic else "the broker's default"
        detail = (
            f"{len(found.partitions)} partitions x {replicas} replicas, in sync {in_sync}, "
            f"min.insync.replicas {found.min_insync_replicas} ({where})"
        )
    return [Check("topic replicated 3, min.insync.replicas 2", ok, detail)]


def _leadership_moved(evidence: Evidence, outcome: Outcome, logs: Path) -> list[Check]:
    """The killed broker led the busiest partition; another in-sync replica took it over, and
    the killed broker, restarted, caught up into the in-sync set again."""
    window = outcome.window
    killed = window.brokers_down[0] if window.brokers_down else None
    moved = window.leader_after
    ok = killed is not None and moved is not None and moved != killed
    ok = ok and window.layout is not None and moved in _in_sync_at_fault(window)
    ok = ok and killed in window.in_sync_after
    detail = (
        f"partition {window.busiest}: leader {killed} SIGKILLed, {moved or 'no broker'} led "
        f"it next; in sync at the end {list(window.in_sync_after)}"
    )
    return [Check("leader killed, an in-sync replica took over", ok, detail)]


def _in_sync_at_fault(window: Window) -> tuple[int, ...]:
    assert window.layout is not None and window.busiest is not None
    return next(p.in_sync for p in window.layout.partitions if p.partition == window.busiest)


def _writes_refused(evidence: Evidence, outcome: Outcome, logs: Path) -> list[Check]:
    """With one broker of three running (fewer than min.insync.replicas), nothing was written:
    the event topic's end offsets, as the lone broker told them, did not move from the
    moment it was alone to just before the others came back; POSTs were answered 503 (a
    202 then can only be a repeat, under its key, of a job already in the log). Both
    brokers were back in the busiest partition's in-sync set at the end."""
    window = outcome.window
    degraded = window.degraded_at
    posts = [
        a
        for a in outcome.answers
        if degraded is not None and degraded <= a.at <= window.repaired and a.method == "POST"
    ]
    refused = sum(1 for a in posts if a.status == 503)
    repeats = sum(1 for a in posts if a.status == 202)
    before, after = window.ends_degraded or {}, window.ends_before_repair or {}
    # a partition without a leader takes no write; one with a leader must not have grown,
    # and at least one must have had a leader (else nothing tested min.insync.replicas)
    led = [p for p in before if before[p] is not None or after.get(p) is not None]
    still = bool(led) and all(before[p] == after.get(p) for p in led)
    back = all(n in window.in_sync_after for n in window.brokers_down)
    ok = len(window.brokers_down) == 2 and refused > 0 and still and back
    detail = (
        f"brokers {list(window.brokers_down)} stopped; the log's end offsets while one ran "
        f"(None: no leader): {before} -> {after}; {len(posts)} POSTs then: {refused} x 503, "
        f"{repeats} x 202; in sync at the end {list(window.in_sync_after)}"
    )
    return [Check("one broker left: nothing written, 503", ok, detail)]


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
        Scenario(
            "kill-kafka-leader",
            "three brokers: the busiest partition's leader SIGKILLed mid-load, then restarted",
            faults.kill_busiest_leader,
            cluster=True,
            extra=[_replicated, _leadership_moved],
        ),
        Scenario(
            "two-brokers-down",
            "three brokers: two stopped mid-load (one left, under min.insync.replicas), restarted",
            faults.stop_two_brokers,
            expected_503=True,
            cluster=True,
            extra=[_replicated, _writes_refused],
        ),
    ]
}
