"""Chain fixtures (loaded by tests/conftest.py): real anvil chains, never a fake.

`anvil_chain`: one automining chain for the session (a block per transaction, for fast tests);
tests that change its mining or balances put them back, or take their own chain.
`anvil_factory`: `anvil_factory(block_time=2.0, **options)` starts a chain of the test's own
(2 s blocks by default, for timing), stopped and removed after the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from localinfra.anvil import LocalAnvil

REPO = Path(__file__).resolve().parents[2]
AnvilFactory = Callable[..., LocalAnvil]
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
