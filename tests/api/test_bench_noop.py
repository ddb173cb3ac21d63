"""The benchmark's no-op twin of POST /buckets exists only when BENCH_NOOP_ROUTE enables it,
and then validates and answers exactly like the real route, touching nothing."""

from __future__ import annotations

import uuid

import httpx

from services.api.app import create_app
from services.api.bench_noop import PATH
from shared.settings import Settings


def client(enabled: bool) -> httpx.AsyncClient:
    # No lifespan runs here, so there is no Kafka or Postgres client at all: a 202 proves the
    # route touched neither.
    settings = Settings(_env_file=None, bench_noop_route=enabled)  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


async def test_absent_by_default() -> None:
    async with client(enabled=False) as api:
        response = await api.post(PATH, json={"bucket_name": "some-bucket"})
    assert response.status_code == 404


async def test_answers_the_same_202_as_post_buckets_when_enabled() -> None:
    async with client(enabled=True) as api:
        response = await api.post(PATH, json={"bucket_name": "some-bucket"})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"job_id", "bucket_name", "status"}
    assert (body["bucket_name"], body["status"]) == ("some-bucket", "queued")
    assert response.headers["location"] == f"/buckets/jobs/{uuid.UUID(body['job_id'])}"


async def test_validates_like_post_buckets() -> None:
    async with client(enabled=True) as api:
        bad_name = await api.post(PATH, json={"bucket_name": "Bad_Name"})
        not_json = await api.post(
            PATH, content=b"bucket_name=x", headers={"content-type": "text/plain"}
        )
        bad_key = await api.post(
            PATH, json={"bucket_name": "some-bucket"}, headers={"Idempotency-Key": "bad key"}
        )
    assert bad_name.status_code == 422 and "bucket_name" in bad_name.json()["detail"]
    assert not_json.status_code == 415
    assert bad_key.status_code == 422
