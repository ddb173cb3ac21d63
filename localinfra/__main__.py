"""`python -m localinfra up|down|status`: the dev infrastructure behind `make run`.

`up` leaves the Kafka broker running in the background and prints the settings the
services read, as `KEY=value` lines (progress goes to stderr), so a shell can do
`eval "$(python -m localinfra up | sed 's/^/export /')"`. Running `up` again reuses the
broker. PostgreSQL is the machine's cluster and stays up after `down`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from localinfra.kafka import KafkaError, LocalKafka
from localinfra.postgres import PostgresError, ensure_postgres, find_cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localinfra", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    kafka = LocalKafka(
        _repo_root(),
        port=int(os.environ.get("KAFKA_PORT", "9092")),
        controller_port=int(os.environ.get("KAFKA_CONTROLLER_PORT", "9093")),
        reuse=True,
    )
    try:
        if args.command == "up":
            _up(kafka)
        elif args.command == "down":
            kafka.stop()
            print(f"Kafka broker {kafka.name!r} stopped", file=sys.stderr)
        else:
            _status(kafka)
    except (KafkaError, PostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _up(kafka: LocalKafka) -> None:
    print("PostgreSQL ...", file=sys.stderr)
    database_url = ensure_postgres()
    print(f"Kafka broker {kafka.name!r} ...", file=sys.stderr)
    kafka.start()
    print(f"DATABASE_URL={database_url}")
    print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}")


def _status(kafka: LocalKafka) -> None:
    pid = kafka.pid
    state = f"running (pid {pid})" if pid is not None else "stopped"
    print(f"kafka    {kafka.name} {kafka.bootstrap_servers} {state}  log: {kafka.log_file}")
    cluster = find_cluster()
    if cluster is None:
        print("postgres not installed")
    else:
        where = f"{cluster.version}/{cluster.name} 127.0.0.1:{cluster.port}"
        print(f"postgres {where} {cluster.status}")


def _repo_root() -> Path:
    """The checkout holding pom.xml: next to this package, else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pom.xml").exists() else Path.cwd()


if __name__ == "__main__":
    sys.exit(main())
