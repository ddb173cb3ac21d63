"""The invariants every scenario must keep, each judged from the recorded evidence."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from chaos.evidence import Evidence, Row
from chaos.faults import Window
from chaos.traffic import Answer
from shared.fold import TERMINAL

ANSWER_WITHIN_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Outcome:
    """What the load and the prober saw, plus timings the suite measured."""

    names: int  # bucket names the load was to submit
    accepted: dict[str, str]  # name -> job id, load and prober together
    probe_accepted: int
    never_accepted: list[str]
    answers: list[Answer]
    window: Window
    settled_at: float | None  # monotonic time all accepted jobs were terminal; None: never
    expected_503: bool  # the fault is one the API must answer with 503 (a dependency down)


def invariants(outcome: Outcome, evidence: Evidence) -> list[Check]:
    ids = {uuid.UUID(j) for j in outcome.accepted.values()}
    rm, log = evidence.read_model, evidence.log_fold
    completed = [i for i in ids if i in rm and rm[i].status == "completed"]
    failed = [i for i in ids if i in rm and rm[i].status == "failed"]
    lost_rm = [i for i in ids if i not in rm or rm[i].status not in TERMINAL]
    lost_log = [i for i in ids if i not in log or log[i].status not in TERMINAL]
    stuck = [i for i, row in rm.items() if row.status not in TERMINAL]
    mismatched = [i for i in set(rm) | set(log) if rm.get(i) != log.get(i)]
    load_accepted = len(outcome.accepted) - outcome.probe_accepted
    why_failed = Counter(rm[i].error_code for i in failed)
    return [
        Check(
            "accepted",
            not outcome.never_accepted and load_accepted == outcome.names,
            f"{load_accepted}/{outcome.names} load + {outcome.probe_accepted} probe"
            + (f"; never accepted: {outcome.never_accepted[:3]}" if outcome.never_accepted else ""),
        ),
        Check("completed", len(completed) == len(ids), f"{len(completed)}/{len(ids)}"),
        Check("failed = 0", not failed, f"{len(failed)} {dict(why_failed) if failed else ''}"),
        Check(
            "lost = 0",
            not lost_rm and not lost_log,
            f"{len(lost_rm)} in read model, {len(lost_log)} per log",
        ),
        *_chain(evidence, [rm[i] for i in completed]),
        Check("stuck = 0", not stuck, f"{len(stuck)} non-terminal rows at the end"),
        Check(
            "read model = fold of log",
            not mismatched,
            f"{len(rm)} rows, {len(log)} jobs in log, {len(mismatched)} differ",
        ),
        _api_answers(outcome),
        _recovery(outcome),
    ]


def _chain(evidence: Evidence, completed: list[Row]) -> list[Check]:
    """The chain's own word: one CreateBucket log per name, from our keys, by the transaction
    the job names; none of our transactions reverted."""
    creates = evidence.creates
    logs = sum(len(found) for found in creates.values())
    missing = [r.bucket_name for r in completed if len(creates.get(r.bucket_name, [])) != 1]
    dups = evidence.duplicate_creates()
    not_ours = [
        name
        for name, found in creates.items()
        for log in found
        if log.owner not in evidence.owners or not log.id_matches
    ]
    reverted = evidence.reverted()
    mined = sum(1 for status in evidence.receipts.values() if status is not None)
    wrong_tx = [
        r.bucket_name
        for r in completed
        if r.tx_hash is None
        or evidence.receipts.get(r.tx_hash.lower()) != 1
        or [log.tx_hash.lower() for log in creates.get(r.bucket_name, [])] != [r.tx_hash.lower()]
    ]
    return [
        Check(
            "one CreateBucket per completed job",
            not missing,
            f"{len(completed) - len(missing)}/{len(completed)} names have exactly one"
            + (f"; e.g. {missing[0]}" if missing else ""),
        ),
        Check(
            "duplicate CreateBucket = 0",
            not dups,
            f"{sum(dups.values())} ({logs} CreateBucket logs for {len(creates)} names)"
            + (f"; e.g. {next(iter(dups))}" if dups else ""),
        ),
        Check(
            "CreateBucket from our keys only",
            not not_ours and not evidence.foreign_creates,
            f"{len(not_ours)} of our names by another owner or id, "
            f"{evidence.foreign_creates} logs of names not ours",
        ),
        Check(
            "reverted tx of ours = 0",
            not reverted,
            f"{len(reverted)} of {len(evidence.receipts)} signed ({mined} mined, the rest "
            "replaced or never sent)" + (f"; e.g. {reverted[0]}" if reverted else ""),
        ),
        Check(
            "job tx_hash = its CreateBucket",
            not wrong_tx,
            f"{len(completed) - len(wrong_tx)}/{len(completed)} completed jobs name the mined "
            "transaction of their name's one CreateBucket"
            + (f"; e.g. {wrong_tx[0]}" if wrong_tx else ""),
        ),
    ]


def _api_answers(outcome: Outcome) -> Check:
    """503 + Retry-After within 5 s when something is down; never a 500, never a hang."""
    w = outcome.window
    bad: list[str] = []
    during = [a for a in outcome.answers if w.began <= a.at <= w.repaired]
    for a in outcome.answers:
        # in flight or sent while the api process was dead (it then had no one to answer)
        api_gone = w.api_down and a.at <= w.repaired + 1.0 and a.at + a.latency >= w.began
        if a.status is None:
            if not api_gone:
                bad.append(
                    f"no answer to {a.method} {a.path} sent {a.at - w.began:+.1f} s from the "
                    f"fault: {a.error}"
                )
        elif a.status >= 500 and a.status != 503:
            bad.append(f"{a.status} to {a.method} {a.path}")
        elif a.status == 503 and not a.retry_after:
            bad.append(f"503 without Retry-After to {a.method} {a.path}")
        elif a.latency > ANSWER_WITHIN_S:
            bad.append(f"{a.status} after {a.latency:.1f} s to {a.method} {a.path}")
    fast_503 = [a for a in during if a.status == 503]
    if outcome.expected_503 and not fast_503:
        bad.append("no 503 during the outage (did the fault bite?)")
    answered = [a for a in outcome.answers if a.status is not None]
    slowest = max((a.latency for a in answered), default=0.0)
    slowest_503 = max((a.latency for a in fast_503), default=0.0)
    detail = (
        f"{len(outcome.answers)} requests, {len(during)} during fault: "
        f"{len(fast_503)} x 503 (slowest {slowest_503:.2f} s), slowest answer {slowest:.2f} s"
    )
    if w.api_down:
        refused = sum(1 for a in during if a.status is None)
        detail += f", {refused} unanswered while the api was dead"
    if bad:
        detail += f"; {len(bad)} bad, first: {bad[0]}"
    return Check("API: 503+Retry-After <5 s, no 500/hang", not bad, detail)


def _recovery(outcome: Outcome) -> Check:
    """From the repair to the first healthy answer and accepted POST, and to all terminal."""
    w = outcome.window
    after = [a for a in outcome.answers if a.source == "probe" and a.at >= w.repaired]
    health = next((a.at for a in after if a.path == "/health" and a.status == 200), None)
    post = next((a.at for a in after if a.method == "POST" and a.status == 202), None)
    first = max(health, post) if health is not None and post is not None else None
    settled = outcome.settled_at
    parts = [
        f"fault lasted {w.repaired - w.began:.1f} s",
        f"first 200 + 202 {first - w.repaired:.1f} s after repair"
        if first is not None
        else "API never answered 200 + 202 after repair",
        f"all jobs terminal {settled - w.repaired:.1f} s after repair"
        if settled is not None
        else "jobs never all terminal",
    ]
    return Check("recovered", first is not None and settled is not None, "; ".join(parts))
