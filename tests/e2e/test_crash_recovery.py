"""SIGKILL a service mid-run, restart it: every accepted job still ends exactly once, and the
chain (anvil, 1 s blocks, our contract) has exactly one CreateBucket of each name."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.support.evm_stack import StackChain
from tests.support.stack import Stack, unique_name

pytestmark = pytest.mark.slow
STACK_CHAIN = {"block_time": 1.0}  # a kill lands with creates mined, in flight and unsigned
STACK_SETTINGS = {"executor_concurrency": 4}


@pytest.fixture(scope="module")
def chain(stack: Stack, stack_chain: StackChain) -> StackChain:
    return stack_chain


async def submit(client: httpx.AsyncClient, names: list[str]) -> list[str]:
    responses = await asyncio.gather(
        *(client.post("/buckets", json={"bucket_name": n}) for n in names)
    )
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    return [r.json()["job_id"] for r in responses]


async def assert_all_end_once(
    stack: Stack, client: httpx.AsyncClient, chain: StackChain, names: list[str], ids: list[str]
) -> list[dict[str, object]]:
    jobs = await asyncio.gather(*(stack.wait_terminal(client, j, timeout=120) for j in ids))
    completed = Counter(j["bucket_name"] for j in jobs if j["status"] == "completed")
    for name in set(names):
        assert chain.created(name) == 1, name
        assert completed[name] == 1, (name, [j for j in jobs if j["bucket_name"] == name])
    return jobs


@pytest.mark.parametrize("service", ["executor", "projector"])
async def test_sigkill_mid_run_loses_and_duplicates_nothing(
    stack: Stack, client: httpx.AsyncClient, chain: StackChain, service: str
) -> None:
    names = [unique_name(f"crash-{service}") for _ in range(24)]
    names += names[:4]  # some names asked for twice: exactly one of each pair may complete
    ids = await submit(client, names)
    await asyncio.sleep(1.5)  # a block or two: some creates mined, others signed, in flight
    stack.kill(service)
    more = [unique_name(f"during-{service}") for _ in range(6)]
    ids += await submit(client, more)  # the API keeps accepting while the service is down
    stack.start(service)

    jobs = await assert_all_end_once(stack, client, chain, names + more, ids)
    assert {j["status"] for j in jobs} <= {"completed", "failed"}
    failed = [j for j in jobs if j["status"] == "failed"]
    assert all(j["error_code"] == "bucket_exists" for j in failed), failed
    assert len(failed) == 4
