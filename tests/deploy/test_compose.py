"""compose.yaml, checked by Docker Compose itself (`docker compose config`: the compose
spec's JSON schema, then its own model) at the version the `dev` extra pins, and for the
promises its comments make."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from localinfra.dev_keys import DEV_KEY
from tests.deploy.conftest import REPO, venv_tool

COMPOSE = REPO / "compose.yaml"
GATEWAY = ("chain-setup", "migrate", "api", "executor", "projector", "notifier")


LOCAL = REPO / "deploy" / "compose-local" / "compose.local.yaml"


def config(path: Path, *more: Path) -> subprocess.CompletedProcess[str]:
    files = [arg for p in (path, *more) for arg in ("-f", str(p))]
    return subprocess.run(
        [venv_tool("docker-compose"), *files, "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=path.parent,
    )  # fmt: skip


def test_compose_file_is_valid() -> None:
    result = config(COMPOSE)
    assert result.returncode == 0, result.stderr


def test_compose_rejects_what_the_spec_forbids(tmp_path: Path) -> None:
    """The check above can fail: a misspelt service key is refused by the schema."""
    bad = tmp_path / "compose.yaml"
    bad.write_text(
        COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restrat: x\n", 1)
    )
    result = config(bad)
    assert result.returncode != 0
    assert "restrat" in result.stderr


def test_compose_runs_the_stack_the_gateway_needs() -> None:
    model: dict[str, Any] = json.loads(config(COMPOSE).stdout)
    services = model["services"]
    assert sorted(services) == sorted(["redpanda", "postgres", "anvil", "prometheus", *GATEWAY])
    assert services["postgres"]["image"] == "postgres:15"
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    for name in GATEWAY:
        service = services[name]
        assert service["image"] == "akave-gateway:local", name
        assert service["environment"]["AKAVE_BACKEND"] == "evm", name
    for name in ("api", "executor", "projector", "notifier"):
        after = services[name]["depends_on"]
        assert after["migrate"]["condition"] == "service_completed_successfully", name
        assert after["chain-setup"]["condition"] == "service_completed_successfully", name
    # `--scale executor=N`: no fixed name, no published port
    assert "container_name" not in services["executor"]
    assert "ports" not in services["executor"]
    volumes = {v["target"] for s in services.values() for v in s.get("volumes", [])}
    assert {"/var/lib/redpanda/data", "/var/lib/postgresql/data", "/anvil"} <= volumes


def test_the_only_key_in_compose_is_anvils_public_dev_key() -> None:
    """compose.yaml is committed: the one signing key in it must be anvil's well-known dev
    key 0 (public test data), never a real one, and only the executor gets it."""
    services = json.loads(config(COMPOSE).stdout)["services"]
    holders = {
        name: env["AKAVE_PRIVATE_KEY"]
        for name, service in services.items()
        if "AKAVE_PRIVATE_KEY" in (env := service.get("environment") or {})
    }
    assert holders == {"executor": DEV_KEY}


def test_local_override_swaps_only_images_that_cannot_be_pulled() -> None:
    base = json.loads(config(COMPOSE).stdout)["services"]
    merged = config(COMPOSE, LOCAL)
    assert merged.returncode == 0, merged.stderr
    services = json.loads(merged.stdout)["services"]
    changed = {name for name in services if services[name]["image"] != base[name]["image"]}
    assert changed == {"redpanda", "postgres", "anvil", "prometheus"}
    for name in GATEWAY:
        assert services[name]["environment"] == base[name]["environment"], name
