"""Chain fixtures (loaded by tests/conftest.py): real anvil chains, never a fake.

`anvil_chain`: one automining chain for the session (a block per transaction, for fast tests);
tests that change its mining or balances put them back, or take their own chain.
`anvil_factory`: `anvil_factory(block_time=2.0, **options)` starts a chain of the test's own
(2 s blocks by default, for timing), stopped and removed after the test.
`storage_address` / `akave_storage_address`: our Storage contract / Akave's real one, deployed
on `anvil_chain` (the latter skips where ../shared/akave-contracts/ is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from localinfra.anvil import LocalAnvil
from localinfra.chain import DEPLOYER, deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS

REPO = Path(__file__).resolve().parents[2]
AnvilFactory = Callable[..., LocalAnvil]
# deploy.py signs itself: the key of the account our own deployments come from
AKAVE_DEPLOYER_KEY = dict(DEV_ACCOUNTS)[DEPLOYER]
_names = count()


def _new_chain(**options: Any) -> LocalAnvil:
    return LocalAnvil(REPO, name=f"test-{os.getpid()}-{next(_names)}", **options)


def _discard(chain: LocalAnvil) -> None:
    chain.stop()
    shutil.rmtree(chain.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def anvil_chain() -> Iterator[LocalAnvil]:
    chain = _new_chain(block_time=None)
    chain.start()
    try:
        yield chain
    finally:
        _discard(chain)


@pytest.fixture
def anvil_factory() -> Iterator[AnvilFactory]:
    started: list[LocalAnvil] = []

    def start(block_time: float | None = 2.0, **options: Any) -> LocalAnvil:
        chain = _new_chain(block_time=block_time, **options)
        started.append(chain)
        chain.start()
        return chain

    try:
        yield start
    finally:
        for chain in started:
            _discard(chain)


# Beside the repo (the team kit's layout); AKAVE_CONTRACTS_DIR overrides (e.g. from a worktree)
AKAVE_CONTRACTS = Path(
    os.environ.get("AKAVE_CONTRACTS_DIR") or REPO.parent / "shared" / "akave-contracts"
)


@pytest.fixture(scope="session")
def storage_address(anvil_chain: LocalAnvil) -> str:
    """Our Storage contract (shared/storage_contract.json), deployed on the session chain."""
    return deploy_storage(anvil_chain)


@pytest.fixture(scope="session")
def akave_storage_address(anvil_chain: LocalAnvil) -> str:
    """Akave's real Storage contract (behind its proxy, as its SDK deploys it) on the session
    chain, from ../shared/akave-contracts/ (GPL-3.0, used from there, never copied here)."""
    deploy = AKAVE_CONTRACTS / "deploy.py"
    if not deploy.is_file():
        pytest.skip(f"Akave's contracts are not here ({deploy} is missing; AKAVE_CONTRACTS_DIR)")
    result = subprocess.run(
        [sys.executable, str(deploy), anvil_chain.rpc_url, AKAVE_DEPLOYER_KEY],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        raise RuntimeError(f"deploying Akave's contracts failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]
