"""The Dockerfile: hadolint finds nothing, and what users build is what they pull."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, venv_tool

DOCKERFILE = REPO / "Dockerfile"


# the gateway's, and those of the images compose.local.yaml swaps in where nothing is pulled
DOCKERFILES = [DOCKERFILE, *sorted((REPO / "deploy" / "compose-local").glob("*.Dockerfile"))]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    lint = subprocess.run(
        [venv_tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_hadolint_reports_a_bad_dockerfile() -> None:
    """The check above can fail: an unpinned base and `cd` in RUN are reported."""
    lint = subprocess.run(
        [venv_tool("hadolint"), "--no-color", "-"],
        input="FROM python\nRUN cd /tmp && ls\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert lint.returncode != 0
    assert "DL3006" in lint.stdout and "DL3003" in lint.stdout


def test_base_image_is_an_argument_whose_default_users_pull() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(image == "${BASE_IMAGE}" for image in froms)
    assert re.search(r"^USER 10001:10001$", text, re.M)  # numeric: runAsNonRoot can check it
