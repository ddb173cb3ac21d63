"""Local infrastructure for development, tests and CI: a Kafka broker run from Maven jars
(no Docker on our machines) and the machine's own PostgreSQL cluster.

Stdlib only, so it works before (and independently of) the application's dependencies.
"""

from localinfra.kafka import KafkaError, LocalKafka
from localinfra.postgres import (
    PostgresError,
    create_database,
    ensure_postgres,
    find_cluster,
    start_postgres,
    stop_postgres,
)

__all__ = [
    "KafkaError",
    "LocalKafka",
    "PostgresError",
    "create_database",
    "ensure_postgres",
    "find_cluster",
    "start_postgres",
    "stop_postgres",
]
