"""The Docker path of the suite: Redpanda and Postgres from testcontainers.

Used only where a Docker engine answers and the environment names no services. The machines
this project is built on have no Docker engine, so there the suite runs its own Kafka broker
and uses the machine's PostgreSQL instead (see conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v24.3.5"
POSTGRES_IMAGE = "postgres:15"


@cache
def docker_engine_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
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
