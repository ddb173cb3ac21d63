"""One transaction at a time per signing key, and "nonce too low" retried on the spot."""

from __future__ import annotations

import asyncio

import pytest

from services.executor.errors import BackendError
from services.executor.transactions import TransactionGate
from shared import error_codes

NONCE_TOO_LOW = "bucket creation failed: nonce too low"


class Transactions:
    """Counts calls and how many run at once; fails the first `failures` with `message`."""

    def __init__(self, failures: int = 0, message: str = NONCE_TOO_LOW) -> None:
        self.failures = failures
        self.message = message
        self.calls = 0
        self.inside = 0
        self.most_inside = 0

    async def send(self) -> str:
        self.calls += 1
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await asyncio.sleep(0.01)
            if self.calls <= self.failures:
                raise BackendError(self.message)
            return f"tx-{self.calls}"
        finally:
            self.inside -= 1


async def test_concurrent_sends_never_overlap() -> None:
    gate = TransactionGate(nonce_retries=0, backoff_s=0)
    chain = Transactions()
    results = await asyncio.wait_for(asyncio.gather(*(gate.send(chain.send) for _ in range(8))), 5)
    assert chain.most_inside == 1
    assert sorted(results) == sorted(f"tx-{i}" for i in range(1, 9))


async def test_sends_stay_serialised_while_some_of_them_retry_nonce_conflicts() -> None:
    gate = TransactionGate(nonce_retries=3, backoff_s=0)
    chain = Transactions(failures=3)
    results = await asyncio.wait_for(asyncio.gather(*(gate.send(chain.send) for _ in range(4))), 5)
    assert chain.most_inside == 1
    assert chain.calls == 7
    assert len(results) == 4


async def test_nonce_too_low_is_retried_and_the_send_succeeds() -> None:
    gate = TransactionGate(nonce_retries=3, backoff_s=0)
    chain = Transactions(failures=2)
    assert await gate.send(chain.send) == "tx-3"
    assert chain.calls == 3


@pytest.mark.parametrize("limit", [0, 1, 4])
async def test_nonce_too_low_is_retried_up_to_the_limit_then_raised(limit: int) -> None:
    gate = TransactionGate(nonce_retries=limit, backoff_s=0)
    chain = Transactions(failures=100)
    with pytest.raises(BackendError) as caught:
        await gate.send(chain.send)
    assert caught.value.code == error_codes.NONCE_CONFLICT
    assert chain.calls == limit + 1


async def test_replacement_underpriced_counts_as_a_nonce_conflict_and_is_retried() -> None:
    gate = TransactionGate(nonce_retries=2, backoff_s=0)
    chain = Transactions(failures=1, message="replacement transaction underpriced")
    assert await gate.send(chain.send) == "tx-2"
    assert chain.calls == 2


@pytest.mark.parametrize(
    "message",
    [
        "bucket creation failed: insufficient funds for gas * price + value",
        "bucket creation failed: connection refused",
        "execution reverted: 0x497ef2c2",
        "something nobody expected",
    ],
)
async def test_other_chain_errors_are_not_retried(message: str) -> None:
    gate = TransactionGate(nonce_retries=5, backoff_s=0)
    chain = Transactions(failures=100, message=message)
    with pytest.raises(BackendError, match=message.split(":")[0]):
        await gate.send(chain.send)
    assert chain.calls == 1


async def test_exceptions_that_are_not_backend_errors_pass_through_unretried() -> None:
    gate = TransactionGate(nonce_retries=5, backoff_s=0)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not a chain error")

    with pytest.raises(ValueError):
        await gate.send(broken)
    assert calls == 1


async def test_gate_is_free_again_after_a_send_raised() -> None:
    gate = TransactionGate(nonce_retries=0, backoff_s=0)
    failing = Transactions(failures=1, message="connection refused")
    with pytest.raises(BackendError):
        await gate.send(failing.send)
    ok = Transactions()
    assert await asyncio.wait_for(gate.send(ok.send), 1) == "tx-1"


async def test_other_sends_go_ahead_during_a_nonce_backoff() -> None:
    """The lock is not held while a conflicted send waits to retry."""
    gate = TransactionGate(nonce_retries=1, backoff_s=0.3)
    order: list[str] = []
    tries = 0

    async def conflicted() -> str:
        nonlocal tries
        tries += 1
        order.append(f"conflicted try {tries}")
        if tries == 1:
            raise BackendError(NONCE_TOO_LOW)
        return "late"

    async def other() -> str:
        order.append("other")
        return "other"

    first = asyncio.create_task(gate.send(conflicted))
    while not order:
        await asyncio.sleep(0)
    assert await asyncio.wait_for(gate.send(other), 0.14) == "other"
    assert await asyncio.wait_for(first, 2) == "late"
    assert order == ["conflicted try 1", "other", "conflicted try 2"]
