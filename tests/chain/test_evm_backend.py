"""The `evm` backend (services/executor/backends/evm.py) built from settings, on the session's
automining anvil, against our development contract and against Akave's real Storage.

Keys are anvil's public dev keys 7 and 8 (public test data; no other chain test signs with
them on the session chain), written to a key pool file as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from eth_utils import keccak

from localinfra.anvil import LocalAnvil
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.backends import open_backend
from services.executor.backends.evm import EvmBackend
from services.executor.chain.keys import key_index, read_key_pool
from services.executor.errors import BackendError
from shared import error_codes
from shared.errors import InsecureSecretFile
from shared.settings import Settings

POOL = [DEV_ACCOUNTS[7], DEV_ACCOUNTS[8]]


def bucket_id(name: str, owner: str) -> str:
    return "0x" + keccak(name.encode() + bytes.fromhex(owner[2:])).hex()


def pool_file(tmp_path: Path, accounts: list[tuple[str, str]], tag: str) -> Path:
    path = tmp_path / f"pool-{tag}"
    path.write_text("# one key a line\n" + "\n".join(key for _, key in accounts) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(params=["ours", "akave"])
def contract(request: pytest.FixtureRequest) -> str:
    fixture = "storage_address" if request.param == "ours" else "akave_storage_address"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def backends(
    anvil_chain: LocalAnvil, contract: str, tmp_path: Path
) -> AsyncIterator[Callable[[list[tuple[str, str]]], object]]:
    opened: list[EvmBackend] = []

    async def open_with(accounts: list[tuple[str, str]]) -> EvmBackend:
        settings = Settings(
            _env_file=None,
            akave_backend="evm",
            chain_rpc_url=anvil_chain.rpc_url,
            chain_contract_address=contract,
            chain_key_pool_file=pool_file(tmp_path, accounts, str(len(opened))),
            chain_poll_interval_s=0.05,
        )
        backend = await open_backend(settings)
        assert isinstance(backend, EvmBackend)
        opened.append(backend)
        return backend

    try:
        yield open_with
    finally:
        for backend in opened:
            await backend.close()


async def test_create_view_and_a_second_create_of_the_same_name(backends, contract: str) -> None:
    backend = await backends(POOL)
    name = f"evm-{contract[2:8]}-one"
    assert await backend.view_bucket(name) is None
    created = await backend.create_bucket(name)
    owner = POOL[key_index(name, len(POOL))][0]
    assert created.bucket_id == bucket_id(name, owner)
    found = await backend.view_bucket(name)
    assert found is not None and found.bucket_id == created.bucket_id and found.created_at
    with pytest.raises(BackendError) as refused:
        await backend.create_bucket(name)
    assert refused.value.code == error_codes.BUCKET_ALREADY_ON_CHAIN


async def test_a_name_always_maps_to_the_same_key_and_views_survive_a_pool_change(
    backends, contract: str
) -> None:
    backend = await backends(POOL)
    names = [f"evm-{contract[2:8]}-pool-{i}" for i in range(6)]
    for name in names:
        await backend.create_bucket(name)
    owners = {POOL[key_index(name, len(POOL))][0] for name in names}
    assert len(owners) == 2  # both keys of the pool signed some
    changed = await backends([DEV_ACCOUNTS[6], POOL[1], POOL[0]])  # grown and reordered
    for name in names:
        found = await changed.view_bucket(name)
        assert found is not None, name


def test_a_name_maps_to_the_same_key_in_every_process() -> None:
    script = (
        "from services.executor.chain.keys import key_index as k; "
        "print([k(f'n{i}', 5) for i in range(20)])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert runs == {str([key_index(f"n{i}", 5) for i in range(20)]) + "\n"}


def test_a_key_pool_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = pool_file(tmp_path, POOL, "open")
    path.chmod(0o644)
    with pytest.raises(InsecureSecretFile):
        read_key_pool(path)
