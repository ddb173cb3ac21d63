"""The Docker path of the suite: Redpanda and Postgres from testcontainers.

Used only where a Docker engine answers, both images are there or can be pulled, and the
environment names no services. An engine without a registry (these machines: Debian's
docker.io runs, no registry is reachable) falls back, with the reason printed, to the suite's
own Kafka broker and the machine's PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v24.3.5"
POSTGRES_IMAGE = "postgres:15"


PULL_TIMEOUT_S = 120


@cache
def docker_usable() -> bool:
    """A Docker engine answers and holds (or can pull) both images."""
    if shutil.which("docker") is None or not _docker("info", timeout=10):
        return False
    for image in (REDPANDA_IMAGE, POSTGRES_IMAGE):
        if not _docker("image", "inspect", image, timeout=10) and not _docker(
            "pull", "-q", image, timeout=PULL_TIMEOUT_S
        ):
            print(f"Docker engine found but no {image} (no registry?): using local services")
            return False
    return True


def _docker(*args: str, timeout: float) -> bool:
    try:
        probe = subprocess.run(["docker", *args], capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@contextmanager
def redpanda() -> Iterator[str]:
    """A Redpanda broker; yields its bootstrap address."""
    from testcontainers.kafka import RedpandaContainer

    with RedpandaContainer(REDPANDA_IMAGE) as container:
        yield container.get_bootstrap_server()


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server; yields a SQLAlchemy URL of its database."""
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(
        POSTGRES_IMAGE, username="akave", password="akave", dbname="akave_gateway", driver="psycopg"
    ) as container:
        yield container.get_connection_url()
