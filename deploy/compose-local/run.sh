#!/usr/bin/env bash
# compose.yaml run here, with compose.local.yaml: builds the gateway image and the swapped
# images (Kafka from localinfra's jars, PostgreSQL, anvil and Prometheus on the Debian-made
# base), brings the stack up, walks one create through the API, SIGKILLs the executor under
# load, and takes the stack down with its volumes. Needs root; the engine and base image come
# from localinfra (engine.py, base_image.py). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
COMPOSE=(.venv/bin/docker-compose -p akave-compose-local -f compose.yaml -f deploy/compose-local/compose.local.yaml)
eval "$($PY - <<'PYEOF'
from localinfra.engine import ensure_engine, client, client_env
from localinfra.base_image import ensure_base_image
import os
ensure_engine()
print(f"BASE={ensure_base_image()}")
print(f"DOCKER={client()}")
print(f"export DOCKER_HOST={client_env().get('DOCKER_HOST', 'unix:///var/run/docker.sock')}")
PYEOF
)"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp deploy/compose-local/*.sh deploy/compose-local/*.Dockerfile "$ctx/"
$PY -c 'from localinfra.kafka import LocalKafka; from pathlib import Path; LocalKafka(Path(".")).ensure_jars()'
cp -a .local/kafka/libs "$ctx/libs"
cp "$($PY -c 'from localinfra.anvil import ensure_binary; from pathlib import Path; print(ensure_binary(Path(".")))')" "$ctx/anvil"
build() {  # image, dockerfile, context
  local started=$SECONDS
  DOCKER_BUILDKIT=1 "$DOCKER" build -q --build-arg "BASE_IMAGE=$BASE" -t "$1" -f "$2" "$3" >/dev/null
  echo "built $1 in $((SECONDS - started)) s, $("$DOCKER" image inspect --format '{{.Size}}' "$1" | awk '{printf "%d MB", $1/1e6}')"
}
secret=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt)
started=$SECONDS
DOCKER_BUILDKIT=1 "$DOCKER" build -q "${secret[@]}" --build-arg "BASE_IMAGE=$BASE" -t akave-gateway:local . >/dev/null
echo "built akave-gateway:local in $((SECONDS - started)) s"
build akave-gateway-local/kafka:3.9 "$ctx/kafka.Dockerfile" "$ctx"
build akave-gateway-local/postgres:15 "$ctx/postgres.Dockerfile" "$ctx"
build akave-gateway-local/anvil:1.7.1 "$ctx/anvil.Dockerfile" "$ctx"
build akave-gateway-local/prometheus:bookworm "$ctx/prometheus.Dockerfile" "$ctx"

export AKAVE_LOCAL_API_PORT=${AKAVE_LOCAL_API_PORT:-$($PY -c 'from localinfra.process import free_port; print(free_port())')}
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
trap 'rc=$?; [ $rc -eq 0 ] || "${COMPOSE[@]}" logs --tail 30 >&2 || true; "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1; rm -rf "$ctx"; exit $rc' EXIT
started=$SECONDS
"${COMPOSE[@]}" up -d --no-build --wait --wait-timeout 600
echo "stack up (every service running or healthy, one-shots exited 0) in $((SECONDS - started)) s"
"${COMPOSE[@]}" ps --all --format 'table {{.Service}}\t{{.State}}\t{{.Status}}'
"${COMPOSE[@]}" logs chain-setup migrate | tail -5
$PY - <<PYEOF
import subprocess, time, uuid
from collections import Counter
import httpx
from localinfra.containers_run import walk_one, statuses, _open
api = httpx.Client(base_url="http://127.0.0.1:$AKAVE_LOCAL_API_PORT", timeout=10)
print("/health:", api.get("/health").json()["status"])
print("walk-through: one create")
seen = walk_one(api, f"compose-{uuid.uuid4().hex[:8]}")
assert seen[-1] == "completed", seen
ids = [api.post("/buckets", json={"bucket_name": f"ckill-{uuid.uuid4().hex[:10]}"}).json()["job_id"] for _ in range(40)]
while statuses(api, ids)["completed"] < 1:
    time.sleep(0.5)
compose = "${COMPOSE[*]}".split()
subprocess.run([*compose, "kill", "-s", "KILL", "executor"], check=True)
print("executor SIGKILLed with", dict(statuses(api, ids)))
subprocess.run([*compose, "up", "-d", "--no-build", "executor"], check=True)
deadline = time.monotonic() + 300
while _open(counts := statuses(api, ids)) and time.monotonic() < deadline:
    time.sleep(2)
print("after the restart:", dict(counts))
assert counts == Counter({"completed": 40}), counts
PYEOF
# From inside the compose network (nothing but the API is published): one CreateBucket log per
# name on the chain, and what Prometheus scrapes.
"${COMPOSE[@]}" exec -T api python - <<'PYEOF'
import json, os, time, urllib.request
from collections import Counter
from services.executor.chain.reverts import CREATE_BUCKET_TOPIC
def get(url, body=None):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
query = {"address": os.environ["CHAIN_CONTRACT_ADDRESS"], "fromBlock": "0x0", "toBlock": "latest",
         "topics": [CREATE_BUCKET_TOPIC]}
logs = get("http://anvil:8545", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs",
                                             "params": [query]}).encode())["result"]
per_name = Counter(entry["topics"][1] for entry in logs)
print(f"CreateBucket logs on the chain: {len(logs)} for {len(per_name)} names")
assert len(per_name) == 41 and set(per_name.values()) == {1}, per_name
time.sleep(20)  # one scrape interval (15 s) for the restarted executor
targets = get("http://prometheus:9090/api/v1/targets")["data"]["activeTargets"]
print("prometheus targets:", sorted((t["labels"]["job"], t["health"]) for t in targets))
PYEOF
echo "compose walk-through passed"
