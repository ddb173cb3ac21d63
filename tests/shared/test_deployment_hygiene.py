"""Deployment hygiene that is easy to lose in an edit: non-root containers, no committed `.env`,
every setting documented in `.env.example`."""

from __future__ import annotations

import re
import subprocess

import pytest

from shared.settings import Settings
from tests.support.stack import REPO

ROOT_USERS = {"root", "0", "0:0", "root:root"}


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_image_runs_as_a_non_root_user() -> None:
    instructions = _instructions((REPO / "Dockerfile").read_text())
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    final_stage = instructions[last_from:]
    users = [(i, rest) for i, (word, rest) in enumerate(final_stage) if word == "USER"]
    assert users, "the final stage never sets USER, so it runs as root"
    index, user = users[-1]
    assert user not in ROOT_USERS, f"the final USER is {user}"
    assert user.split(":")[0] not in ROOT_USERS
    starts = [i for i, (word, _) in enumerate(final_stage) if word in {"ENTRYPOINT", "CMD"}]
    assert all(index < i for i in starts), "USER comes after ENTRYPOINT/CMD"


def test_compose_does_not_switch_a_container_to_root() -> None:
    compose = (REPO / "compose.yaml").read_text()
    users = re.findall(r"^\s*user:\s*[\"']?([^\"'\s#]+)", compose, re.M)
    assert not [u for u in users if u in ROOT_USERS or u.split(":")[0] in ROOT_USERS], users


@pytest.mark.parametrize("path", [".env", "sub/.env"])
def test_env_files_are_ignored_by_git_and_docker(path: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
    assert ignored.returncode == 0, f"{path} is not git-ignored"
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_env_example_is_not_ignored() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO, check=False)
    assert ignored.returncode == 1


def test_every_setting_is_documented_in_env_example() -> None:
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert not missing, f"add these to .env.example: {missing}"
