"""With the projector down, idempotent POSTs still answer fast and do not starve the API.

The chaos suite found it: each idempotent POST held its key's lock (a pooled connection)
while waiting for the projector, and polled with a second connection, for the full
read-your-writes timeout. With the projector dead, a steady stream of POSTs used up the pool
and answers took over 5 s.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support.stack import Stack, unique_name

pytestmark = pytest.mark.slow
ANSWER_WITHIN_S = 5.0
RATE = 20  # POSTs a second, each its own key
SECONDS = 3


async def _post(client: httpx.AsyncClient, name: str) -> tuple[int, float, str | None]:
    started = time.monotonic()
    response = await client.post(
        "/buckets", json={"bucket_name": name}, headers={"Idempotency-Key": name}
    )
    return response.status_code, time.monotonic() - started, response.headers.get("retry-after")


async def test_idempotent_posts_answer_fast_while_the_projector_is_down(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    stack.kill("projector")
    try:
        tasks = []
        for _ in range(RATE * SECONDS):
            tasks.append(asyncio.create_task(_post(client, unique_name("nopro"))))
            await asyncio.sleep(1 / RATE)
        health_started = time.monotonic()
        health = await client.get("/health")
        health_took = time.monotonic() - health_started
        answers = await asyncio.gather(*tasks)
    finally:
        stack.start("projector")
    slow = [a for a in answers if a[1] > ANSWER_WITHIN_S]
    assert not slow, f"{len(slow)} of {len(answers)} POSTs took over 5 s, e.g. {slow[0]}"
    assert all(s == 202 or (s == 503 and ra) for s, _, ra in answers), answers
    assert sum(1 for s, _, _ in answers if s == 202) >= len(answers) * 0.9, answers
    assert health.status_code == 200 and health_took < ANSWER_WITHIN_S, health.text
