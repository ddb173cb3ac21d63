"""The chain backend's contract: what the executor relies on from every `AkaveBackend`.

Each test here runs once per backend in `BACKENDS`, each time on a fresh backend. The executor
(`services/executor/job.py`) depends on exactly this: a missing bucket is None, a created
bucket is visible, a second create of a name fails as `bucket_already_on_chain` and is retried
so that the bucket is adopted from a view, invalid names fail for good, and `close()` may be
called more than once. What only one backend does (the evm backend's transaction manager, the
SDK adapter's threads, key masking and closing) is in that backend's own test modules. The evm
backend runs it on our Storage contract and on Akave's own (../shared/akave-contracts; skipped
where that is missing).

A backend joins the contract with one entry in `BACKENDS`: a name and an async context manager
that builds the backend from the test's fixtures and closes it afterwards.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import ModuleType

import pytest

from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.backends.akave_sdk import AkaveSdkBackend
from services.executor.backends.base import AkaveBackend, ChainBucket, CreatedBucket
from services.executor.backends.evm import EvmBackend
from services.executor.errors import BackendError
from shared import error_codes
from shared.events import BucketCreated
from shared.settings import Settings

PUBLISHED_TX_HASH = re.compile(r"^0x[0-9a-f]{64}$")
EARLIEST_BLOCK_TIME = 1_700_000_000  # November 2023: any real block time is later

OpenBackend = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[AkaveBackend]]


@asynccontextmanager
async def akave_sdk(request: pytest.FixtureRequest) -> AsyncIterator[AkaveBackend]:
    """The SDK adapter on the stand-in `akavesdk` (tests/support/akave_stub), with a throwaway
    key of this test's own."""
    sdk: ModuleType = request.getfixturevalue("sdk")
    assert sdk.instances == []  # the stand-in is fresh: nothing from another test
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        akave_backend="akave",
        akave_private_key=request.getfixturevalue("key"),
        akave_private_key_file=None,
        akave_node_address="node.test:5500",
    )
    backend = AkaveSdkBackend.from_settings(settings)
    try:
        yield backend
    finally:
        await backend.close()


def evm_on(contract_fixture: str) -> OpenBackend:
    """The evm backend on the session's anvil with the Storage contract that fixture deploys,
    signing with anvil's dev key 7 (public test data)."""

    @asynccontextmanager
    async def evm(request: pytest.FixtureRequest) -> AsyncIterator[AkaveBackend]:
        async with _evm(request, request.getfixturevalue(contract_fixture)) as backend:
            yield backend

    return evm


@asynccontextmanager
async def _evm(request: pytest.FixtureRequest, contract: str) -> AsyncIterator[AkaveBackend]:
    chain = request.getfixturevalue("anvil_chain")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        akave_backend="evm",
        akave_private_key=DEV_ACCOUNTS[7][1],
        akave_private_key_file=None,
        chain_rpc_url=chain.rpc_url,
        chain_contract_address=contract,
        chain_poll_interval_s=0.05,
    )
    backend = await EvmBackend.open(settings)
    try:
        yield backend
    finally:
        await backend.close()


BACKENDS: dict[str, OpenBackend] = {
    "akave_sdk": akave_sdk,
    "evm": evm_on("storage_address"),
    "evm_akave_contract": evm_on("akave_storage_address"),
}


@pytest.fixture(params=list(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[AkaveBackend]:
    """A fresh backend of each kind in `BACKENDS`, closed after the test."""
    async with BACKENDS[request.param](request) as opened:
        yield opened


def unique(prefix: str) -> str:
    """A valid bucket name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def published(created: CreatedBucket) -> str | None:
    """The tx hash as the executor publishes it: through `BucketCreated`'s normalisation."""
    event = BucketCreated(
        job_id=uuid.uuid4(),
        bucket_name=created.name,
        tx_hash=created.tx_hash,
        bucket_id=created.bucket_id,
        bucket_created_at=created.created_at,
    )
    return event.tx_hash


async def test_a_bucket_never_created_is_not_found(backend: AkaveBackend) -> None:
    assert await backend.view_bucket(unique("missing")) is None


async def test_create_gives_the_name_and_a_tx_hash_that_publishes_as_0x_and_64_hex(
    backend: AkaveBackend,
) -> None:
    name = unique("create")
    created = await backend.create_bucket(name)
    assert isinstance(created, CreatedBucket)
    assert created.name == name
    tx_hash = published(created)
    assert tx_hash is not None and PUBLISHED_TX_HASH.match(tx_hash), created.tx_hash
    assert created.bucket_id is None or (isinstance(created.bucket_id, str) and created.bucket_id)
    assert created.created_at is None or created.created_at > EARLIEST_BLOCK_TIME


async def test_a_created_bucket_is_found_with_what_its_create_returned(
    backend: AkaveBackend,
) -> None:
    name = unique("view")
    created = await backend.create_bucket(name)
    found = await backend.view_bucket(name)
    assert isinstance(found, ChainBucket)
    assert found.name == name
    assert found.bucket_id is None or (isinstance(found.bucket_id, str) and found.bucket_id)
    if created.bucket_id is not None:
        assert found.bucket_id == created.bucket_id
    if created.created_at is not None:
        assert found.created_at == created.created_at


async def test_distinct_names_are_distinct_buckets(backend: AkaveBackend) -> None:
    first, second = unique("first"), unique("second")
    made = [await backend.create_bucket(first), await backend.create_bucket(second)]
    assert published(made[0]) != published(made[1])
    found = [await backend.view_bucket(first), await backend.view_bucket(second)]
    assert [bucket.name if bucket else None for bucket in found] == [first, second]
    ids = [bucket.bucket_id for bucket in found if bucket is not None]
    if None not in ids:
        assert ids[0] != ids[1]


async def test_a_second_create_of_a_name_is_bucket_already_on_chain_and_the_bucket_stays(
    backend: AkaveBackend,
) -> None:
    """The executor retries this code and adopts the bucket its next view finds."""
    name = unique("twice")
    await backend.create_bucket(name)
    before = await backend.view_bucket(name)
    with pytest.raises(BackendError) as caught:
        await backend.create_bucket(name)
    assert (caught.value.code, caught.value.retryable) == (
        error_codes.BUCKET_ALREADY_ON_CHAIN,
        True,
    )
    assert await backend.view_bucket(name) == before


@pytest.mark.parametrize("name", ["a", "ab"])
async def test_a_name_shorter_than_three_is_an_invalid_bucket_name_not_retryable(
    backend: AkaveBackend, name: str
) -> None:
    with pytest.raises(BackendError) as caught:
        await backend.create_bucket(name)
    assert (caught.value.code, caught.value.retryable) == (error_codes.INVALID_BUCKET_NAME, False)


async def test_viewing_an_empty_name_is_an_invalid_bucket_name_not_retryable(
    backend: AkaveBackend,
) -> None:
    with pytest.raises(BackendError) as caught:
        await backend.view_bucket("")
    assert (caught.value.code, caught.value.retryable) == (error_codes.INVALID_BUCKET_NAME, False)


async def test_close_may_be_called_again_and_concurrently(backend: AkaveBackend) -> None:
    await backend.view_bucket(unique("used"))
    await backend.close()
    await backend.close()
    await asyncio.gather(backend.close(), backend.close())
