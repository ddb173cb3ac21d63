"""A three-broker Kafka cluster (KRaft) on this machine: three `LocalKafka` JVMs from the same
jars, each broker and controller at once, one controller quorum of all three.

What production runs (a Kafka or Redpanda cluster), at the smallest size that survives a
broker's loss: internal topics replicated three times. The gateway's own topics take their
replication from TOPIC_REPLICATION_FACTOR (3 here) and carry min.insync.replicas 2, set by the
gateway itself (the brokers' default stays 1), so a write acknowledged with acks=all is on two
brokers, one broker may die without losing it, and with two gone writes are refused.

Stdlib only, like the rest of `localinfra`.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from localinfra.kafka import LocalKafka, new_cluster_id
from localinfra.process import HOST, free_port

SIZE = 3


class LocalKafkaCluster:
    """Nodes 1..3, named `<name>-1`.. under `.local/kafka/`, on free ports; `fresh` on the
    first start. Any node may be stopped, killed and started again on its data."""

    def __init__(self, root: Path, *, name: str, size: int = SIZE) -> None:
        ports = [(free_port(), free_port()) for _ in range(size)]
        quorum = ",".join(f"{i}@{HOST}:{c}" for i, (_, c) in enumerate(ports, start=1))
        cluster_id = new_cluster_id()
        self.nodes = {
            i: LocalKafka(
                root,
                name=f"{name}-{i}",
                port=port,
                controller_port=controller,
                fresh=True,
                node_id=i,
                quorum=quorum,
                cluster_id=cluster_id,
                replicas=size,
            )
            for i, (port, controller) in enumerate(ports, start=1)
        }

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id]

    def start(self, node_ids: Iterable[int] | None = None, timeout: float = 120) -> None:
        """Start these nodes (all by default) together: none is ready before a quorum of
        controllers runs, so they cannot be started one after another."""
        chosen = list(self.nodes) if node_ids is None else list(node_ids)
        self._each(chosen, lambda node: node.start(timeout))

    def stop(self, node_ids: Iterable[int] | None = None) -> None:
        """Stop these nodes (all by default) cleanly, together."""
        chosen = list(self.nodes) if node_ids is None else list(node_ids)
        self._each(chosen, lambda node: node.stop())

    def destroy(self) -> None:
        """Stop every node that runs (SIGKILL: its data goes next) and remove their files."""
        for node in self.nodes.values():
            if node.is_running():
                node.kill()
            shutil.rmtree(node.dir, ignore_errors=True)

    def running(self) -> list[int]:
        return [i for i, node in self.nodes.items() if node.is_running()]

    def _each(self, node_ids: list[int], act: Callable[[LocalKafka], None]) -> None:
        errors: list[BaseException] = []

        def run(node: LocalKafka) -> None:
            try:
                act(node)
            except BaseException as exc:  # raised in the caller's thread below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(self.nodes[i],)) for i in node_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def __enter__(self) -> LocalKafkaCluster:
        try:
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
