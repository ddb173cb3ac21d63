"""The simulated chain on the real Postgres: names per owner, reverts, nonces, faults, restarts."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from services.executor.backends.simulated import SimulatedChain
from services.executor.errors import BackendError
from shared import error_codes
from shared.settings import Settings

SDK_TX_HASH = re.compile(r"^[0-9a-f]{64}$")
OpenChain = Callable[..., Awaitable[SimulatedChain]]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def open_chain(base_settings: Settings) -> AsyncIterator[OpenChain]:
    """Opens chains for a fresh owner of this test's own; every chain is closed afterwards."""
    opened: list[SimulatedChain] = []
    owner = unique("owner")

    async def open_(**overrides: Any) -> SimulatedChain:
        values: dict[str, Any] = {"sim_owner": owner, "sim_latency_ms": 0, **overrides}
        chain = await SimulatedChain.open(base_settings.model_copy(update=values))
        opened.append(chain)
        return chain

    yield open_
    for chain in opened:
        await chain.close()


async def test_create_returns_a_64_hex_hash_without_0x_like_the_sdk(open_chain: OpenChain) -> None:
    chain = await open_chain()
    name = unique("hash")
    created = await chain.create_bucket(name)
    assert SDK_TX_HASH.match(created.tx_hash), created.tx_hash
    assert created.name == name
    assert created.bucket_id and created.created_at and created.created_at > 1_700_000_000


async def test_second_create_of_a_name_reverts_with_bucket_already_exists(
    open_chain: OpenChain,
) -> None:
    chain = await open_chain()
    name = unique("twice")
    await chain.create_bucket(name)
    with pytest.raises(BackendError, match="0x497ef2c2") as caught:
        await chain.create_bucket(name)
    assert caught.value.code == error_codes.BUCKET_ALREADY_ON_CHAIN
    assert await chain.create_calls(name) == {"created": 1, "reverted": 1}


async def test_create_calls_of_a_name_never_created_are_empty(open_chain: OpenChain) -> None:
    chain = await open_chain()
    assert await chain.create_calls(unique("never")) == {}


async def test_names_are_unique_per_owner_not_globally(open_chain: OpenChain) -> None:
    mine = await open_chain()
    theirs = await open_chain(sim_owner=unique("other-owner"))
    name = unique("shared-name")
    first = await mine.create_bucket(name)
    assert await theirs.view_bucket(name) is None
    second = await theirs.create_bucket(name)
    assert first.tx_hash != second.tx_hash
    mine_seen, theirs_seen = await mine.view_bucket(name), await theirs.view_bucket(name)
    assert mine_seen is not None and theirs_seen is not None
    assert mine_seen.bucket_id == first.bucket_id
    assert theirs_seen.bucket_id == second.bucket_id


async def test_second_transaction_of_an_owner_in_flight_gets_nonce_too_low(
    open_chain: OpenChain,
) -> None:
    chain = await open_chain(sim_latency_ms=300)
    names = [unique("nonce-a"), unique("nonce-b")]
    results = await asyncio.gather(*(chain.create_bucket(n) for n in names), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1, results
    failure = failures[0]
    assert isinstance(failure, BackendError)
    assert "nonce too low" in str(failure)
    assert (failure.code, failure.retryable) == (error_codes.NONCE_CONFLICT, True)
    loser = names[results.index(failure)]
    winner = names[1 - results.index(failure)]
    assert await chain.create_calls(loser) == {"nonce_too_low": 1}
    assert await chain.create_calls(winner) == {"created": 1}
    assert await chain.view_bucket(loser) is None


async def test_owner_can_send_again_once_its_transaction_is_mined(open_chain: OpenChain) -> None:
    chain = await open_chain(sim_latency_ms=50)
    first, second = unique("seq-a"), unique("seq-b")
    await chain.create_bucket(first)
    await chain.create_bucket(second)
    assert await chain.create_calls(second) == {"created": 1}


async def test_different_owners_do_not_share_a_nonce(open_chain: OpenChain) -> None:
    mine = await open_chain(sim_latency_ms=200)
    theirs = await open_chain(sim_owner=unique("other-owner"), sim_latency_ms=200)
    names = [unique("own-a"), unique("own-b")]
    await asyncio.gather(mine.create_bucket(names[0]), theirs.create_bucket(names[1]))
    assert await mine.view_bucket(names[0]) is not None
    assert await theirs.view_bucket(names[1]) is not None


async def test_buckets_survive_closing_and_reopening_the_chain(open_chain: OpenChain) -> None:
    before = await open_chain()
    name = unique("durable")
    created = await before.create_bucket(name)
    await before.close()

    after = await open_chain()
    seen = await after.view_bucket(name)
    assert seen is not None and seen.bucket_id == created.bucket_id
    with pytest.raises(BackendError, match="0x497ef2c2"):
        await after.create_bucket(name)
    assert await after.create_calls(name) == {"created": 1, "reverted": 1}


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [
        ("transient", error_codes.BACKEND_ERROR, True),
        ("insufficient_funds", error_codes.INSUFFICIENT_FUNDS, False),
        ("receipt_timeout", error_codes.RECEIPT_TIMEOUT, True),
    ],
)
async def test_injected_fault_fires_exactly_the_given_number_of_times(
    open_chain: OpenChain, kind: Any, code: str, retryable: bool
) -> None:
    chain = await open_chain()
    name = unique(f"fault-{kind.replace('_', '-')}")
    await chain.inject_fault(name, kind, 2)
    for _ in range(2):
        with pytest.raises(BackendError) as caught:
            await chain.create_bucket(name)
        assert (caught.value.code, caught.value.retryable) == (code, retryable)
        assert await chain.view_bucket(name) is None
    created = await chain.create_bucket(name)
    assert SDK_TX_HASH.match(created.tx_hash)
    assert await chain.create_calls(name) == {kind: 2, "created": 1}


async def test_injected_fault_touches_only_its_own_name(open_chain: OpenChain) -> None:
    chain = await open_chain()
    faulty, healthy = unique("faulty"), unique("healthy")
    await chain.inject_fault(faulty, "transient", 1)
    await chain.create_bucket(healthy)
    assert await chain.create_calls(healthy) == {"created": 1}
    with pytest.raises(BackendError):
        await chain.create_bucket(faulty)


async def test_injecting_a_fault_again_replaces_the_remaining_count(open_chain: OpenChain) -> None:
    chain = await open_chain()
    name = unique("refault")
    await chain.inject_fault(name, "transient", 5)
    await chain.inject_fault(name, "insufficient_funds", 1)
    with pytest.raises(BackendError) as caught:
        await chain.create_bucket(name)
    assert caught.value.code == error_codes.INSUFFICIENT_FUNDS
    await chain.create_bucket(name)
    assert await chain.create_calls(name) == {"insufficient_funds": 1, "created": 1}


async def test_permanent_insufficient_funds_fails_every_create(open_chain: OpenChain) -> None:
    chain = await open_chain(sim_permanent_error="insufficient_funds")
    name = unique("broke")
    for _ in range(2):
        with pytest.raises(BackendError, match="insufficient funds") as caught:
            await chain.create_bucket(name)
        assert (caught.value.code, caught.value.retryable) == (
            error_codes.INSUFFICIENT_FUNDS,
            False,
        )
    assert await chain.view_bucket(name) is None
    assert await chain.create_calls(name) == {"insufficient_funds": 2}


async def test_permanent_invalid_bucket_name_fails_as_a_non_retryable_invalid_name(
    open_chain: OpenChain,
) -> None:
    chain = await open_chain(sim_permanent_error="invalid_bucket_name")
    name = unique("rejected")
    with pytest.raises(BackendError) as caught:
        await chain.create_bucket(name)
    assert (caught.value.code, caught.value.retryable) == (error_codes.INVALID_BUCKET_NAME, False)
    assert await chain.view_bucket(name) is None


async def test_transient_failure_rate_of_one_fails_every_create(open_chain: OpenChain) -> None:
    chain = await open_chain(sim_transient_failure_rate=1.0)
    name = unique("flaky")
    for _ in range(3):
        with pytest.raises(BackendError, match="simulated") as caught:
            await chain.create_bucket(name)
        assert caught.value.retryable is True
    assert await chain.view_bucket(name) is None
    assert await chain.create_calls(name) == {"transient": 3}


async def test_transaction_takes_the_configured_latency(open_chain: OpenChain) -> None:
    chain = await open_chain(sim_latency_ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await chain.create_bucket(unique("slow"))
    assert loop.time() - started >= 0.15
