"""The deployment tools the tests run: helm, hadolint, kubernetes-validate and Docker Compose,
all from the `dev` extra (PyPI wheels that carry the binaries, installed next to this Python)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """A tool the `dev` extra installs next to this Python."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing: pip install -e '.[dev]'")
    return str(path)


@pytest.fixture(scope="session")
def helm() -> str:
    return venv_tool("helm")
