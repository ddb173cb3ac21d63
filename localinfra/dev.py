"""`akave-gateway dev`: the whole gateway on one machine, for trying it out and developing.

Provisions PostgreSQL (the machine's, unless DATABASE_URL is set), a local Kafka broker
(unless KAFKA_BOOTSTRAP_SERVERS is set) and, for the evm backend, the dev chain (anvil with
2 s blocks, its state kept across restarts, our Storage contract deployed, the dev key funded;
unless CHAIN_RPC_URL is set), migrates, then supervises api, executor, projector and notifier
as child processes until Ctrl-C or SIGTERM, and stops everything it started, JVM and chain
included. The chain's settings and key reach the executor through its environment only,
never printed. At start-up it warns when the chain is behind the log (localinfra/chain_behind.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import SecretStr

from localinfra import chain_behind
from localinfra.chain import DevChain, ensure_dev_chain
from localinfra.kafka import LocalKafka
from localinfra.postgres import ensure_postgres
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import Settings

SERVICES = ("projector", "executor", "notifier", "api")
CHECKOUT = Path(__file__).resolve().parent.parent  # the broker's files go to its .local/


def run_dev(settings: Settings, root: Path = CHECKOUT) -> int:
    """`root`: where the dev broker and chain keep their files (`.local/`)."""
    given = settings.model_fields_set
    broker: LocalKafka | None = None
    if "database_url" not in given:
        settings = settings.model_copy(update={"database_url": ensure_postgres(None)})
    if "kafka_bootstrap_servers" not in given:
        port = int(os.environ.get("KAFKA_PORT", "9092"))
        broker = LocalKafka(root, name="dev", port=port, controller_port=port + 1, reuse=True)
        print(f"starting Kafka on 127.0.0.1:{port} ...", flush=True)
        broker.start()
        settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
    chain: DevChain | None = None
    chain_env: dict[str, str] = {}
    if settings.akave_backend == "evm" and "chain_rpc_url" not in given:
        port = int(os.environ.get("ANVIL_PORT", "8545"))
        print(f"starting the dev chain (anvil) on 127.0.0.1:{port} ...", flush=True)
        try:
            chain = ensure_dev_chain(root, port=port)
        except BaseException:
            if broker is not None:
                broker.stop()
            raise
        settings, chain_env = _on_dev_chain(settings, chain)
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)
    try:
        migrate(settings)
        asyncio.run(ensure_topics(settings))
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            **chain_env,
        }
        if settings.akave_backend == "evm" and settings.chain_contract_address:
            _warn_if_chain_behind(settings)
        for name in SERVICES:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "cli", name], env=env, start_new_session=True
            )
        print(
            f"\nAkave Async Gateway is running (backend: {settings.akave_backend})\n"
            f"  API      http://{settings.api_host}:{settings.api_port}  (docs at /docs)\n"
            f"  console  http://{settings.api_host}:{settings.api_port}/console\n"
            f"  Kafka    {settings.kafka_bootstrap_servers}\n"
            + (
                f"  Chain    {settings.chain_rpc_url}  (anvil, chain id {settings.chain_id})\n"
                if chain
                else ""
            )
            + f"{metrics_lines(settings)}"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if chain is not None:
            chain.chain.stop()  # a clean stop writes the chain's state
        if broker is not None:
            broker.stop()
        print("stopped", flush=True)


def _warn_if_chain_behind(settings: Settings) -> None:
    try:
        behind = chain_behind.check(settings)
    except Exception as exc:  # a check that cannot run must not stop the gateway
        print(f"could not check the chain against the log: {exc!r}", file=sys.stderr, flush=True)
        return
    if behind:
        print(f"\n{behind}\n", file=sys.stderr, flush=True)


def _on_dev_chain(settings: Settings, chain: DevChain) -> tuple[Settings, dict[str, str]]:
    """Settings and child environment for the dev chain. The signer is the configured key, or
    anvil's public dev key (localinfra/dev_keys.py, funded by ensure_dev_chain)."""
    env = {
        "CHAIN_RPC_URL": chain.rpc_url,
        "CHAIN_CONTRACT_ADDRESS": chain.contract_address,
        "CHAIN_ID": str(chain.chain_id),
    }
    update: dict[str, object] = {
        "chain_rpc_url": chain.rpc_url,
        "chain_contract_address": chain.contract_address,
        "chain_id": chain.chain_id,
    }
    if settings.chain_key_pool_file is None and not settings.private_key():
        env["AKAVE_PRIVATE_KEY"] = chain.private_key
        update["akave_private_key"] = SecretStr(chain.private_key)
    return settings.model_copy(update=update), env


def metrics_lines(settings: Settings) -> str:
    """Where each service's Prometheus metrics are (docs/operations.md)."""
    lines = []
    if settings.api_metrics:
        lines.append(f"  metrics  api       http://{settings.api_host}:{settings.api_port}/metrics")
    for name, port in (
        ("executor", settings.executor_metrics_port),
        ("projector", settings.projector_metrics_port),
        ("notifier", settings.notifier_metrics_port),
    ):
        if port:
            lines.append(f"  metrics  {name:<9} http://{settings.metrics_host}:{port}/metrics")
    return "".join(line + "\n" for line in lines)
