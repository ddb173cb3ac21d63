"""The container engine for `make test-containers`: Docker, installed and started when missing.

Debian's `docker.io` is the engine here; `dockerd` runs with the `vfs` storage driver (no
overlay filesystem inside this machine) and its log in `/var/log/dockerd-akave.log`.

When no engine answers already, the one started here listens on a socket of its own
(`SOCKET`, exported to the client as DOCKER_HOST), never the default `/var/run/docker.sock`:
the test suite takes a Docker engine at the default socket as one that can pull Redpanda and
Postgres images (tests/support/containers.py), and this machine pulls nothing. Images
are built with BuildKit, and only Debian's own client (`/usr/bin/docker`, shipped with the
engine) has BuildKit without the separate buildx plugin, so that client is preferred.
Needs root, like the rest of this machine's installs (apt-get).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

DEBIAN_CLIENT = Path("/usr/bin/docker")
DAEMON_LOG = Path("/var/log/dockerd-akave.log")
SOCKET = Path("/run/akave-gateway-docker/docker.sock")
EXEC_ROOT = Path("/run/akave-gateway-docker/exec")
START_TIMEOUT_S = 60


class EngineError(RuntimeError):
    """The engine could not be installed, started or asked something."""


def client() -> str:
    """The docker client to use: Debian's when installed, else the one on PATH."""
    if DEBIAN_CLIENT.exists():
        return str(DEBIAN_CLIENT)
    found = shutil.which("docker")
    if found is None:
        raise EngineError("no docker client")
    return found


def client_env() -> dict[str, str]:
    """The environment for the client: DOCKER_HOST names our engine when it runs."""
    if "DOCKER_HOST" not in os.environ and SOCKET.exists():
        return {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}
    return dict(os.environ)


def docker(*args: str, timeout: float = 600, check: bool = True, **env: str) -> str:
    """Run the docker client; its stdout. Fails with the client's stderr."""
    result = subprocess.run(
        [client(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**client_env(), **env},
    )
    if check and result.returncode != 0:
        raise EngineError(f"docker {' '.join(args[:3])} ...: {result.stderr.strip()[-2000:]}")
    return result.stdout


def ensure_engine() -> None:
    """Install docker.io when dockerd is missing, start dockerd when it does not answer."""
    if shutil.which("dockerd") is None:
        print("installing docker.io ...", flush=True)
        _apt_install("docker.io")
    if _answers():
        return
    print(f"starting dockerd (storage driver vfs) on {SOCKET} ...", flush=True)
    SOCKET.parent.mkdir(parents=True, exist_ok=True)
    with DAEMON_LOG.open("ab") as log:
        subprocess.Popen(
            [
                "dockerd",
                "--storage-driver=vfs",
                f"--host=unix://{SOCKET}",
                f"--exec-root={EXEC_ROOT}",
                f"--pidfile={SOCKET.parent / 'dockerd.pid'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this run: images stay cached for the next
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers():
        if time.monotonic() > deadline:
            raise EngineError(f"dockerd did not answer in {START_TIMEOUT_S} s, see {DAEMON_LOG}")
        time.sleep(0.5)


def image_exists(name: str) -> bool:
    inspect = subprocess.run(
        [client(), "image", "inspect", name], capture_output=True, env=client_env()
    )
    return inspect.returncode == 0


def _answers() -> bool:
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=10)
    except (EngineError, subprocess.TimeoutExpired):
        return False
    return True


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )
