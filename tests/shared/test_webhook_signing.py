"""Webhook signatures: Standard Webhooks format, verifiable by the README's snippet."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from shared.webhook_signing import new_secret, secret_problem, signature, signed_headers
from tests.support.webhook_receiver import readme_verify

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BODY = b'{"type":"BucketCreated","data":{"bucket_name":"abc"}}'


def test_signature_is_hmac_sha256_of_id_timestamp_and_body_with_the_decoded_secret() -> None:
    expected = hmac.new(bytes(range(32)), b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert signature(SECRET, "msg_1", 1_700_000_000, BODY) == (
        "v1," + base64.b64encode(expected).decode()
    )


def test_signature_changes_with_id_timestamp_body_and_secret() -> None:
    base = signature(SECRET, "msg_1", 1_700_000_000, BODY)
    assert signature(SECRET, "msg_2", 1_700_000_000, BODY) != base
    assert signature(SECRET, "msg_1", 1_700_000_001, BODY) != base
    assert signature(SECRET, "msg_1", 1_700_000_000, BODY + b" ") != base
    assert signature(new_secret(), "msg_1", 1_700_000_000, BODY) != base


def test_readme_snippet_accepts_fresh_signed_requests_and_rejects_tampering_and_replays() -> None:
    verify = readme_verify()
    now = int(time.time())
    headers = signed_headers(SECRET, "d-1", now, BODY)
    verify(SECRET, headers, BODY)
    with pytest.raises(ValueError, match="signature"):
        verify(SECRET, headers, BODY.replace(b"abc", b"abd"))
    with pytest.raises(ValueError, match="signature"):
        verify(new_secret(), headers, BODY)
    with pytest.raises(ValueError, match="signature"):
        verify(SECRET, {**headers, "webhook-id": "d-2"}, BODY)
    stale = signed_headers(SECRET, "d-1", now - 301, BODY)
    with pytest.raises(ValueError, match="replay window"):
        verify(SECRET, stale, BODY)


def test_generated_secrets_are_valid_and_distinct() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(secret_problem(s) is None for s in secrets)


@pytest.mark.parametrize(
    "secret",
    [
        "plain-text",
        "whsec_",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_bad_secrets_are_named(secret: str) -> None:
    assert secret_problem(secret) is not None
