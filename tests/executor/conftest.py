"""Fixtures of the executor's tests: the stand-in Akave SDK, fresh per test, and a throwaway key."""

from __future__ import annotations

import importlib
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import AKAVE_STUB


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The stand-in `akavesdk`, freshly imported from tests/support/akave_stub with empty state."""
    monkeypatch.syspath_prepend(str(AKAVE_STUB))
    sys.modules.pop("akavesdk", None)
    module = importlib.import_module("akavesdk")
    assert Path(module.__file__ or "").parent.parent == AKAVE_STUB
    module.reset()
    try:
        yield module
    finally:
        sys.modules.pop("akavesdk", None)


@pytest.fixture
def key() -> str:
    """A random throwaway signing key for this test only."""
    return secrets.token_hex(32)
