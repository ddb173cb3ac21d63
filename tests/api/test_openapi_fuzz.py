"""Schemathesis against the OpenAPI document the running API serves: no 5xx, and every answer
(status code, headers, body) as documented, on every operation the document lists.

The API is the real one: `akave-gateway api` as its own process (uvicorn, HTTP), with a real
Kafka topic and Postgres database, and the executor and projector behind it. API keys are on,
so the run goes through the access-control middleware and the documented 401/403/429 too.

Schemathesis' pytest plugin (`from_fixture`) does not work with pytest 9.2 (it sets a node
attribute pytest removed), so the test drives its Hypothesis strategies directly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.api.api_keys import digest_of, new_token
from tests.support.stack import Stack

pytestmark = pytest.mark.slow

TOKEN = new_token()
STACK_SETTINGS = {
    "api_keys": f"fuzzer:{digest_of(TOKEN)}:write",
    # The limit is tested elsewhere; here it must not hide the routes behind 429s.
    "api_rate_limit_per_s": 100_000.0,
    "api_rate_limit_burst": 100_000,
    # Unknown job ids wait this long for the projector before 404; keeps the run short.
    "read_your_writes_timeout_s": 1.0,
}
REJECTIONS = [
    str(code) for code in (400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431)
]
EXAMPLES_PER_OPERATION_AND_MODE = 175
MIN_CASES = 1000
cases: Counter[str] = Counter()
# 422s a schema-valid request may get, because validity depends on state: an Idempotency-Key
# already used with another body, a cursor this API never issued, and a webhook URL whose host
# does not resolve or is one of the gateway's own services (the network and the deployment
# decide), or whose bracketed IPv6 host is not an address (a grammar the pattern leaves out).
# Schemathesis' own positive_data_acceptance check cannot tell these apart, so this test does
# it instead.
STATEFUL_REFUSALS = (
    "Idempotency-Key was already used",
    "cursor is not one this API returned",
    "url host ",
    "url points at ",
    "url: url is not valid: ",
)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def test_every_operation_answers_as_documented(stack: Stack, session: requests.Session) -> None:
    """Positive (schema-valid) and negative (schema-violating) cases for each operation the
    served document lists, so routes added later are fuzzed without a change here."""
    # The key as schemathesis' auth for the document's bearer scheme: it sends it with every
    # case, and its ignored_auth check also replays cases with no and with a wrong key.
    # A schema-violating request refused for its size (413 body, 414 URL, 431 headers) is
    # refused too: add those to what the negative-data check counts as a rejection. 5xx stays
    # out, so the not_a_server_error check still fails on any.
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"apiKey": {"bearer": TOKEN}}},
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}},
        }
    )
    schema = schemathesis.openapi.from_url(stack.base_url + "/openapi.json", config=config)
    streaming = streaming_operations(session.get(stack.base_url + "/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.label not in streaming]
    assert operations
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, session)
    assert set(cases) == {op.label for op in operations}, cases
    assert sum(cases.values()) >= MIN_CASES, cases


def streaming_operations(document: dict[str, Any]) -> set[str]:
    """Operations whose success is an endless stream (Server-Sent Events): a fuzzer that waits
    for the whole body cannot test them, so they need tests of their own."""
    return {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation.get("responses", {}).items()
        if status.startswith("2") and "text/event-stream" in answer.get("content", {})
    }


def fuzz(operation: Any, mode: GenerationMode, session: requests.Session) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        cases[case.operation.label] += 1
        response = case.call_and_validate(
            session=session, excluded_checks=[positive_data_acceptance], timeout=30
        )
        if mode is GenerationMode.POSITIVE and response.status_code == 422:
            # Schema-valid yet refused: only for what a schema cannot say.
            detail = response.json()["detail"]
            assert detail.startswith(STATEFUL_REFUSALS), (case.as_curl_command(), detail)

    started, before = time.monotonic(), cases[operation.label]
    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, operation.label
    ran = cases[operation.label] - before
    print(f"{operation.label} {mode}: {ran} cases in {time.monotonic() - started:.1f}s")
