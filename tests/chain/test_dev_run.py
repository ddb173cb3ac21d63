"""`make run` on the dev chain (localinfra/dev.py): it starts anvil, runs the gateway on the evm
backend, prints the chain's URL (never the key), stops the chain on exit; and at start-up it
warns when the chain is behind the log (localinfra/chain_behind.py).

The dev key is anvil's public dev key (localinfra/dev_keys.py), public test data.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import insert

from localinfra import chain_behind
from localinfra.anvil import LocalAnvil
from localinfra.dev_keys import DEV_ACCOUNTS, DEV_ADDRESS, DEV_KEY
from services.executor.backends.evm import EvmBackend
from shared.db import make_engine
from shared.models import BucketJob
from shared.settings import Settings
from tests.chain.fixtures import REPO
from tests.chain.test_dev_chain import dev_root
from tests.support.stack import free_port, settings_env

pytestmark = pytest.mark.slow
ADDRESS, KEY = DEV_ACCOUNTS[6]


async def insert_completed(database_url: str, name: str) -> None:
    engine = make_engine(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(BucketJob).values(
                    id=uuid.uuid4(),
                    bucket_name=name,
                    status="completed",
                    tx_hash="0x" + "ab" * 32,
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                    completed_at=now,
                )
            )
    finally:
        await engine.dispose()


async def test_a_completed_job_without_its_bucket_on_the_chain_is_reported_with_the_remedy(
    database_url: str, anvil_chain: LocalAnvil, storage_address: str
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        akave_backend="evm",
        chain_rpc_url=anvil_chain.rpc_url,
        chain_contract_address=storage_address,
        chain_id=anvil_chain.chain_id,
        akave_private_key=SecretStr(KEY),
    )
    ghost, real = f"ghost-{uuid.uuid4().hex[:8]}", f"real-{uuid.uuid4().hex[:8]}"
    backend = await EvmBackend.open(settings)
    try:
        await backend.create_bucket(real)
    finally:
        await backend.close()
    await insert_completed(database_url, real)
    assert ghost not in await chain_behind.missing_on_chain(settings)
    await insert_completed(database_url, ghost)

    missing = await chain_behind.missing_on_chain(settings)
    assert ghost in missing and real not in missing
    said = await asyncio.to_thread(chain_behind.check, settings)
    assert said is not None
    assert "BEHIND the log" in said and ghost in said and ".local/anvil/dev/" in said


def anvils_on(port: int) -> list[str]:
    found = subprocess.run(["pgrep", "-af", "anvil"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if f"--port {port}" in line]


RUN_DEV = (
    "import sys; from pathlib import Path; from localinfra.dev import run_dev; "
    "from shared.settings import Settings; sys.exit(run_dev(Settings(), root=Path(sys.argv[1])))"
)


def start_runner(root: Path, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", RUN_DEV, str(root)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def test_the_dev_runner_runs_on_the_dev_chain_and_stops_it(
    tmp_path: Path, base_settings: Settings
) -> None:
    root = dev_root(tmp_path)
    anvil_port, api_port = free_port(), free_port()
    tag = uuid.uuid4().hex[:8]
    settings = base_settings.model_copy(
        update={
            "api_port": api_port,
            "bucket_events_topic": f"dev-{tag}.bucket-events",
            "dead_letter_topic": f"dev-{tag}.bucket-events.dlq",
            "executor_group_id": f"dev-{tag}-executor",
            "notifier_group_id": f"dev-{tag}-notifier",
        }
    )
    env = settings_env(settings)
    for name in ("AKAVE_BACKEND", "CHAIN_RPC_URL", "CHAIN_CONTRACT_ADDRESS", "CHAIN_ID"):
        env.pop(name, None)  # the defaults: evm, on the chain the runner starts
    env["ANVIL_PORT"] = str(anvil_port)
    out = tmp_path / "dev.out"
    runner = start_runner(root, env, out)
    try:
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            while True:
                assert runner.poll() is None, out.read_text()
                assert time.monotonic() < deadline, out.read_text()
                try:
                    health = (await client.get("/health")).json()
                    if health["status"] == "ok" and health["lanes"]:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
            assert [lane["address"] for lane in health["lanes"]] == [DEV_ADDRESS]
            assert f"Chain    http://127.0.0.1:{anvil_port}" in out.read_text()
            assert anvils_on(anvil_port)

            name = f"dev-run-{tag}"
            response = await client.post("/buckets", json={"bucket_name": name})
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            while (job := (await client.get(f"/buckets/jobs/{job_id}")).json())[
                "status"
            ] != "completed":
                assert job["status"] != "failed", job
                assert time.monotonic() < deadline + 60, out.read_text()
                await asyncio.sleep(0.5)
    finally:
        runner.send_signal(signal.SIGTERM)
        code = runner.wait(60)
    text = out.read_text()
    assert code == 0, text
    assert DEV_KEY not in text and DEV_KEY.removeprefix("0x") not in text
    assert anvils_on(anvil_port) == [], "the dev chain outlived the runner"
    assert (root / ".local" / "anvil" / "dev" / "state.json").is_file()
