"""Local infrastructure for development, tests and CI: a Kafka broker run from Maven jars
(no Docker on our machines), the machine's own PostgreSQL cluster and an anvil EVM chain
installed from npm.

Stdlib only, so it works before (and independently of) the application's dependencies.
"""

from localinfra.anvil import AnvilError, LocalAnvil, RpcError
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
    "AnvilError",
    "KafkaError",
    "LocalAnvil",
    "LocalKafka",
    "PostgresError",
    "RpcError",
    "create_database",
    "ensure_postgres",
    "find_cluster",
    "start_postgres",
    "stop_postgres",
]
