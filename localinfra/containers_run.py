"""`make test-containers`: the gateway's image built from the real Dockerfile and run, here.

1. The engine (localinfra/engine.py), installed and started when missing; the base image
   (localinfra/base_image.py): python:3.11-slim when a registry has it, else one made from
   Debian's packages.
2. `docker build` of the Dockerfile with that base as BASE_IMAGE (the host's CA bundle, when
   there is one, goes in as the `pip_ca` build secret: never into a layer).
3. Kafka, PostgreSQL and an anvil chain (2 s blocks, our Storage contract) of this run's own on
   the host, on free ports; the containers use the host's network to reach them.
4. The same image run as migrate and topics (one-shot), then api, executor, projector and
   notifier, each checked to run as uid 10001; the signing key is anvil's public dev key 3
   (PUBLIC TEST DATA, localinfra/dev_keys.py), mounted as a key pool file of mode 600.
5. One create walked through the containerised API: queued -> processing -> completed.
6. A load of creates; the executor container SIGKILLed while they are in flight, started again;
   then every accepted job must be terminal and `completed`, and the chain must hold exactly
   one CreateBucket log per name.

Prints the build times, the image size and the walk-through; exits nonzero when a check fails.
The engine and the images stay (the next run reuses their layers); the containers, broker,
chain and database of the run are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

from localinfra.anvil import LocalAnvil
from localinfra.base_image import ensure_base_image
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from localinfra.engine import EngineError, docker, ensure_engine
from localinfra.kafka import LocalKafka
from localinfra.postgres import PrivatePostgres, create_database
from localinfra.process import free_port
from services.executor.chain.reverts import CREATE_BUCKET_TOPIC

CHECKOUT = Path(__file__).resolve().parent.parent
IMAGE = "akave-gateway:local"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_UID = "10001"
ADDRESS, KEY = DEV_ACCOUNTS[3]  # public test data: anvil's dev account 3
SERVICES = ("api", "executor", "projector", "notifier")


class CheckFailed(AssertionError):
    """The containers did not do what the gateway promises."""


def build_image(base: str, tag: str = IMAGE) -> float:
    """The seconds `docker build` took."""
    args = ["build", "--build-arg", f"BASE_IMAGE={base}", "-t", tag]
    if HOST_CA_BUNDLE.exists():
        args += ["--secret", f"id=pip_ca,src={HOST_CA_BUNDLE}"]
    started = time.monotonic()
    docker(*args, str(CHECKOUT), timeout=1800, DOCKER_BUILDKIT="1")
    return time.monotonic() - started


class Run:
    """The containers of one run, named after it, on the host's network."""

    def __init__(self, env: dict[str, str], key_dir: Path) -> None:
        self.prefix = f"akave-ct-{os.getpid()}"
        self.env = env
        self.key_dir = key_dir
        self.started: list[str] = []

    def name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def _args(self, extra_env: dict[str, str]) -> list[str]:
        args = ["--network", "host", "-v", f"{self.key_dir}:/run/akave-keys:ro"]
        for key, value in {**self.env, **extra_env}.items():
            args += ["-e", f"{key}={value}"]
        return args

    def once(self, *command: str) -> str:
        return docker("run", "--rm", *self._args({}), IMAGE, *command, timeout=300)

    def start(self, service: str, **extra_env: str) -> None:
        name = self.name(service)
        docker("run", "-d", "--name", name, *self._args(extra_env), IMAGE, service)
        self.started.append(name)

    def logs(self, service: str, lines: int = 40) -> str:
        result = docker("logs", "--tail", str(lines), self.name(service), check=False)
        return result

    def remove(self) -> None:
        for name in self.started:
            docker("rm", "-f", name, check=False)


def wait_for(what: str, check: object, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if callable(check) and check():
                return
        except (httpx.HTTPError, EngineError):
            pass
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout} s")
        time.sleep(interval)


def walk_one(api: httpx.Client, name: str, timeout: float = 60) -> list[str]:
    """POST one create and poll its job until terminal; the statuses seen, in order."""
    response = api.post("/buckets", json={"bucket_name": name})
    if response.status_code != 202:
        raise CheckFailed(f"POST /buckets: {response.status_code} {response.text}")
    job_id = response.json()["job_id"]
    seen: list[str] = [response.json()["status"]]
    print(f"  {time.strftime('%H:%M:%S')} job {job_id} {seen[0]} (POST 202)", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.get(f"/buckets/jobs/{job_id}")
        if answer.status_code == 200:
            status = answer.json()["status"]
            if seen[-1] != status:
                seen.append(status)
                print(f"  {time.strftime('%H:%M:%S')} job {job_id} {status}", flush=True)
            if status in ("completed", "failed"):
                return seen
        time.sleep(0.1)
    raise CheckFailed(f"job {job_id} not terminal in {timeout} s: {seen}")


def _open(counts: Counter[str]) -> int:
    return counts["queued"] + counts["processing"]


def create_logs(chain: LocalAnvil, contract: str) -> Counter[str]:
    logs = chain.rpc(
        "eth_getLogs",
        {
            "address": contract,
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [CREATE_BUCKET_TOPIC],
        },
    )
    return Counter(entry["topics"][1] for entry in logs)


def statuses(api: httpx.Client, ids: list[str]) -> Counter[str]:
    return Counter(api.get(f"/buckets/jobs/{job_id}").json()["status"] for job_id in ids)


@contextlib.contextmanager
def infrastructure(root: Path) -> Iterator[tuple[str, LocalKafka, LocalAnvil]]:
    """Postgres, Kafka and anvil of this run's own, on the host; removed afterwards."""
    with contextlib.ExitStack() as stack:
        postgres = PrivatePostgres(free_port())
        stack.callback(postgres.destroy)
        postgres.start()
        database = create_database(postgres.admin_url, "akave_containers")
        kafka = LocalKafka(
            root, name="containers", port=free_port(), controller_port=free_port(), fresh=True
        )
        stack.callback(kafka.stop)
        kafka.start()
        chain = LocalAnvil(root, name="containers", port=free_port(), block_time=2.0, fresh=True)
        stack.callback(chain.stop)
        chain.start()
        yield database, kafka, chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localinfra.containers_run", description=__doc__
    )
    parser.add_argument("--jobs", type=int, default=60, help="creates in the kill test")
    args = parser.parse_args(argv)

    ensure_engine()
    started = time.monotonic()
    base = ensure_base_image()
    base_s = time.monotonic() - started
    print(f"base image {base} ready in {base_s:.0f} s", flush=True)
    build_s = build_image(base)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE).strip())
    print(f"image {IMAGE} built in {build_s:.0f} s, {size / 1e6:.0f} MB", flush=True)

    with (
        infrastructure(CHECKOUT) as (database, kafka, chain),
        tempfile.TemporaryDirectory(prefix="akave-ct-keys-") as keys,
    ):
        contract = deploy_storage(chain)
        key_dir = Path(keys)
        pool = key_dir / "pool"
        pool.write_text(KEY + "\n")
        # the image's user must own its key file, and nobody else may read it
        os.chmod(key_dir, 0o755)
        os.chown(pool, int(IMAGE_UID), int(IMAGE_UID))
        pool.chmod(0o600)
        api_port = free_port()
        run = Run(
            {
                "DATABASE_URL": database,
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "AKAVE_BACKEND": "evm",
                "CHAIN_RPC_URL": chain.rpc_url,
                "CHAIN_CONTRACT_ADDRESS": contract,
                "CHAIN_KEY_POOL_FILE": "/run/akave-keys/pool",
                "API_PORT": str(api_port),
                "EXECUTOR_METRICS_PORT": str(free_port()),
                "PROJECTOR_METRICS_PORT": str(free_port()),
                "NOTIFIER_METRICS_PORT": str(free_port()),
            },
            key_dir,
        )
        try:
            return _walk(run, chain, contract, api_port, args.jobs)
        except CheckFailed:
            for service in SERVICES:
                print(f"--- {service} (last lines) ---\n{run.logs(service)}", flush=True)
            raise
        finally:
            run.remove()


def _walk(run: Run, chain: LocalAnvil, contract: str, api_port: int, jobs: int) -> int:
    print("migrate, topics (one-shot containers) ...", flush=True)
    run.once("migrate")
    run.once("topics")
    for service in SERVICES:
        run.start(service)
    for service in SERVICES:
        uid = docker("exec", run.name(service), "id", "-u").strip()
        if uid != IMAGE_UID:
            raise CheckFailed(f"{service} runs as uid {uid}, not {IMAGE_UID}")
    print(f"api, executor, projector, notifier running as uid {IMAGE_UID}", flush=True)
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
    wait_for("API /health ok", lambda: api.get("/health").json()["status"] == "ok", 90)
    print(f"/health: {api.get('/health').json()}", flush=True)

    print("walk-through: one create", flush=True)
    seen = walk_one(api, f"walk-{uuid.uuid4().hex[:8]}")
    if seen[-1] != "completed" or "processing" not in seen:
        raise CheckFailed(f"the walk-through saw {seen}, not ... processing ... completed")

    print(f"kill test: {jobs} creates, the executor SIGKILLed while they run", flush=True)
    names = [f"kill-{uuid.uuid4().hex[:10]}" for _ in range(jobs)]
    ids = []
    for name in names:
        response = api.post("/buckets", json={"bucket_name": name})
        if response.status_code != 202:
            raise CheckFailed(f"POST /buckets: {response.status_code} {response.text}")
        ids.append(response.json()["job_id"])
    wait_for(
        "some creates completed before the kill",
        lambda: statuses(api, ids)["completed"] >= 1,
        60,
    )
    before = statuses(api, ids)
    docker("kill", "--signal", "KILL", run.name("executor"))
    code = docker("inspect", "--format", "{{.State.ExitCode}}", run.name("executor")).strip()
    print(f"  executor SIGKILLed (exit code {code}) with jobs {dict(before)}", flush=True)
    time.sleep(3)
    docker("start", run.name("executor"))
    print("  executor container started again", flush=True)
    wait_for("every job terminal", lambda: _open(statuses(api, ids)) == 0, 300, 2)
    after = statuses(api, ids)
    logs = create_logs(chain, contract)
    print(f"  jobs after the restart: {dict(after)}", flush=True)
    print(
        f"  CreateBucket logs on the chain: {sum(logs.values())} for {len(logs)} names", flush=True
    )
    if after != Counter({"completed": jobs}):
        raise CheckFailed(f"not every accepted job completed: {dict(after)}")
    if len(logs) != jobs + 1 or set(logs.values()) != {1}:
        raise CheckFailed(
            f"not one CreateBucket per name: {len(logs)} names, {Counter(logs.values())}"
        )
    print("containers: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
