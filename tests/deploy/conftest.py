"""The deployment tools the tests run: helm (built from its Go module into `.local/bin` the
first time, then reused), hadolint, kubernetes-validate and Docker Compose (from the `dev`
extra: PyPI wheels that carry the binaries)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
LOCAL_BIN = REPO / ".local" / "bin"
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """A tool the `dev` extra installs next to this Python."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing: pip install -e '.[dev]'")
    return str(path)


def _helm_version(binary: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(binary), "version", "--template", "{{.Version}}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_helm() -> Path:
    """`.local/bin/helm` at HELM_VERSION, `go install`ed when missing or another version."""
    binary = LOCAL_BIN / "helm"
    LOCAL_BIN.mkdir(parents=True, exist_ok=True)
    with open(LOCAL_BIN / "helm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, other runs wait for it
        if _helm_version(binary) == HELM_VERSION:
            return binary
        go = shutil.which("go") or (
            "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
        )
        if go is None:
            pytest.fail("helm is built from its Go module: install Go 1.24 or later")
        build = subprocess.run(
            [go, "install", f"{HELM_MODULE}@{HELM_VERSION}"],
            env={**os.environ, "GOBIN": str(LOCAL_BIN), "CGO_ENABLED": "0"},
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if build.returncode != 0:
            pytest.fail(f"go install helm {HELM_VERSION} failed:\n{build.stderr[-3000:]}")
    return binary


@pytest.fixture(scope="session")
def helm() -> Iterator[str]:
    yield str(ensure_helm())
