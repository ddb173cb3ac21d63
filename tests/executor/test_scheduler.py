"""Keyed scheduling (order per key, concurrency across keys) and the committable offset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from services.executor.scheduler import KeyedScheduler, OffsetTracker

Work = Callable[[], Coroutine[Any, Any, None]]


def recording(log: list[str], label: str, hold: asyncio.Event | None = None) -> Work:
    """Work that notes its start and end in `log`, optionally waiting for `hold` in between."""

    async def work() -> None:
        log.append(f"start {label}")
        await asyncio.sleep(0)
        if hold is not None:
            await hold.wait()
        log.append(f"end {label}")

    return work


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


# KeyedScheduler -------------------------------------------------------------------------------


async def test_jobs_of_one_key_run_strictly_in_submission_order() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    gates = [asyncio.Event() for _ in range(4)]
    tasks = [scheduler.submit("bucket-a", recording(log, str(i), gates[i])) for i in range(4)]
    await settle()
    assert log == ["start 0"]
    # Release them backwards: a later job that is ready must still wait for the earlier one.
    for gate in reversed(gates[1:]):
        gate.set()
    await settle()
    assert log == ["start 0"]
    gates[0].set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert log == [f"{edge} {i}" for i in range(4) for edge in ("start", "end")]


async def test_jobs_of_one_key_never_overlap_when_they_do_real_waiting() -> None:
    scheduler = KeyedScheduler()
    inside = 0
    most_inside = 0
    order: list[int] = []

    def job(i: int) -> Work:
        async def work() -> None:
            nonlocal inside, most_inside
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.005 * (5 - i))  # earlier jobs take longer
            order.append(i)
            inside -= 1

        return work

    await asyncio.wait_for(asyncio.gather(*(scheduler.submit("k", job(i)) for i in range(5))), 2)
    assert most_inside == 1
    assert order == [0, 1, 2, 3, 4]


async def test_jobs_of_different_keys_run_concurrently() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    hold = asyncio.Event()
    tasks = [scheduler.submit(key, recording(log, key, hold)) for key in ("a", "b", "c")]
    await settle()
    assert sorted(log) == ["start a", "start b", "start c"]
    assert scheduler.running == 3
    hold.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert scheduler.running == 0


async def test_a_blocked_key_does_not_hold_back_another_key() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    stuck = asyncio.Event()
    blocked = scheduler.submit("slow", recording(log, "slow-1", stuck))
    queued = scheduler.submit("slow", recording(log, "slow-2"))
    other = scheduler.submit("fast", recording(log, "fast"))
    await asyncio.wait_for(other, 2)
    assert "end fast" in log and "start slow-2" not in log
    stuck.set()
    await asyncio.wait_for(asyncio.gather(blocked, queued), 2)
    assert log.index("end slow-1") < log.index("start slow-2")


async def test_failed_job_does_not_stop_the_next_job_of_its_key() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []

    async def boom() -> None:
        log.append("boom")
        raise RuntimeError("chain exploded")

    failed = scheduler.submit("k", boom)
    after = scheduler.submit("k", recording(log, "next"))
    await asyncio.wait_for(after, 2)
    assert log == ["boom", "start next", "end next"]
    assert isinstance(failed.exception(), RuntimeError)


async def test_cancelled_job_does_not_stop_the_next_job_of_its_key() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    never = asyncio.Event()
    first = scheduler.submit("k", recording(log, "first", never))
    second = scheduler.submit("k", recording(log, "second"))
    await settle()
    await scheduler.cancel({first})
    await asyncio.wait_for(second, 2)
    assert first.cancelled()
    assert log == ["start first", "start second", "end second"]


async def test_cancelling_a_waiting_job_does_not_let_the_next_one_overtake_the_running_one() -> (
    None
):
    """Only the cancelled job is dropped; the one after it still waits for the running one."""
    scheduler = KeyedScheduler()
    log: list[str] = []
    hold = asyncio.Event()
    first = scheduler.submit("k", recording(log, "first", hold))
    waiting = scheduler.submit("k", recording(log, "waiting"))
    last = scheduler.submit("k", recording(log, "last"))
    await settle()
    await scheduler.cancel({waiting})
    assert waiting.cancelled() and not first.done()
    hold.set()
    await asyncio.wait_for(asyncio.gather(first, last), 2)
    assert log == ["start first", "end first", "start last", "end last"]


async def test_job_submitted_after_a_cancelled_tail_still_waits_for_the_running_one() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    hold = asyncio.Event()
    running = scheduler.submit("k", recording(log, "running", hold))
    tail = scheduler.submit("k", recording(log, "tail"))
    await settle()
    await scheduler.cancel({tail})
    newcomer = scheduler.submit("k", recording(log, "newcomer"))
    await settle()
    assert log == ["start running"]
    hold.set()
    await asyncio.wait_for(asyncio.gather(running, newcomer), 2)
    assert log == ["start running", "end running", "start newcomer", "end newcomer"]


async def test_cancel_of_a_subset_cancels_only_those() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    hold = asyncio.Event()
    tasks = {key: scheduler.submit(key, recording(log, key, hold)) for key in "abcd"}
    await settle()
    await scheduler.cancel({tasks["a"], tasks["c"]})
    assert tasks["a"].cancelled() and tasks["c"].cancelled()
    assert not tasks["b"].done() and not tasks["d"].done()
    assert scheduler.running == 2
    hold.set()
    await asyncio.wait_for(asyncio.gather(tasks["b"], tasks["d"]), 2)
    assert sorted(e for e in log if e.startswith("end")) == ["end b", "end d"]


async def test_cancel_without_arguments_cancels_everything_and_waits_for_it() -> None:
    scheduler = KeyedScheduler()
    never = asyncio.Event()
    tasks = [scheduler.submit(key, recording([], key, never)) for key in ("a", "a", "b")]
    await settle()
    await asyncio.wait_for(scheduler.cancel(), 2)
    assert all(t.done() for t in tasks)
    assert scheduler.running == 0


async def test_on_done_is_called_once_per_job_with_its_task_however_it_ended() -> None:
    scheduler = KeyedScheduler()
    finished: list[asyncio.Task[None]] = []
    never = asyncio.Event()

    async def boom() -> None:
        raise ValueError("no")

    ok = scheduler.submit("a", recording([], "ok"), finished.append)
    bad = scheduler.submit("b", boom, finished.append)
    stuck = scheduler.submit("c", recording([], "stuck", never), finished.append)
    await asyncio.wait([ok, bad])
    await settle()
    await scheduler.cancel({stuck})
    await settle()
    assert sorted(finished, key=id) == sorted([ok, bad, stuck], key=id)
    assert ok.exception() is None and isinstance(bad.exception(), ValueError)
    assert stuck.cancelled()


async def test_key_is_free_again_once_its_last_job_ended() -> None:
    scheduler = KeyedScheduler()
    log: list[str] = []
    await asyncio.wait_for(scheduler.submit("k", recording(log, "1")), 2)
    later = scheduler.submit("k", recording(log, "2"))
    await asyncio.wait_for(later, 2)
    assert log == ["start 1", "end 1", "start 2", "end 2"]
    assert scheduler.running == 0


# OffsetTracker --------------------------------------------------------------------------------


def test_nothing_consumed_means_nothing_to_commit() -> None:
    assert OffsetTracker().committable() is None


def test_committable_is_one_past_the_highest_consumed_when_nothing_is_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in (0, 1, 5, 3):
        tracker.consumed(offset)
    assert tracker.committable() == 6


def test_committable_is_the_lowest_unfinished_offset() -> None:
    tracker = OffsetTracker()
    for offset in range(10):
        tracker.consumed(offset)
    for offset in (7, 3, 8):
        tracker.started(offset)
    assert tracker.committable() == 3
    assert tracker.in_flight == 3


def test_finishing_the_lowest_unfinished_moves_committable_to_the_next_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in range(10):
        tracker.consumed(offset)
        if offset in (2, 4, 6):
            tracker.started(offset)
    tracker.finished(2)
    assert tracker.committable() == 4
    tracker.finished(6)
    assert tracker.committable() == 4
    tracker.finished(4)
    assert tracker.committable() == 10
    assert tracker.in_flight == 0


def test_finishing_an_offset_above_the_lowest_unfinished_keeps_committable() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.consumed(offset)
        tracker.started(offset)
    tracker.finished(12)
    tracker.finished(11)
    assert tracker.committable() == 10


def test_unfinished_offset_holds_commit_even_after_later_records_are_consumed() -> None:
    tracker = OffsetTracker()
    tracker.consumed(0)
    tracker.started(0)
    for offset in range(1, 100):
        tracker.consumed(offset)
    assert tracker.committable() == 0
    tracker.finished(0)
    assert tracker.committable() == 100


def test_consuming_an_older_offset_again_does_not_move_committable_back() -> None:
    tracker = OffsetTracker()
    tracker.consumed(9)
    tracker.consumed(2)
    assert tracker.committable() == 10


@pytest.mark.parametrize("repeat", [1, 2])
def test_finishing_twice_or_an_unknown_offset_is_harmless(repeat: int) -> None:
    tracker = OffsetTracker()
    tracker.consumed(4)
    tracker.started(4)
    for _ in range(repeat):
        tracker.finished(4)
    tracker.finished(99)
    assert tracker.committable() == 5
    assert tracker.in_flight == 0
