"""Webhook target rules: URL shape, and never the gateway's own services."""

from __future__ import annotations

import pytest

from shared.errors import TargetRefused
from shared.settings import Settings
from shared.webhook_targets import check_target, parse_deny_list, parse_url

SETTINGS = Settings(
    _env_file=None,  # type: ignore[call-arg]
    api_host="127.0.0.1",
    api_port=8000,
    kafka_bootstrap_servers="127.0.0.1:9092,localhost:9094",
    database_url="postgresql://u:p@localhost:5432/db",
    webhook_deny_targets="169.254.0.0/16, 10.1.2.3:8080, [fd00::1]:81",
)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "/relative",
        "http://user:pw@example.com/",
        "http://user@example.com/",
        "http:///nohost",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\n",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        parse_url(url)


def test_default_ports_follow_the_scheme() -> None:
    assert parse_url("http://Example.com/a").port == 80
    assert parse_url("https://example.com/a").port == 443
    assert parse_url("https://example.com:8443/a").host == "example.com"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost:8000/hook",
        "http://127.9.9.9:8000/hook",
        "http://0.0.0.0:8000/hook",
        "http://[::1]:8000/hook",
        "http://[::ffff:127.0.0.1]:8000/hook",
        "http://127.0.0.1:9092/",
        "http://127.0.0.1:9094/",
        "http://127.0.0.1:5432/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3:8080/",
        "http://[fd00::1]:81/",
    ],
)
async def test_own_services_and_denied_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="may not target"):
        await check_target(url, SETTINGS, 2.0)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8001/hook", "http://localhost:9093/", "http://10.1.2.3:8081/"],
)
async def test_other_ports_on_the_same_host_are_allowed(url: str) -> None:
    assert (await check_target(url, SETTINGS, 2.0)).port in (8001, 9093, 8081)


@pytest.mark.parametrize(
    # The second and third are names IDNA cannot encode (an empty label, a 64-letter label):
    # the resolver raises UnicodeError for them, not OSError (found by the fuzz test, as a 500).
    "url",
    ["http://no-such-host.invalid/", "HtTPS://.q=2t(o:66/", "http://" + "a" * 64 + ".example/"],
)
async def test_a_host_that_does_not_resolve_is_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="does not resolve"):
        await check_target(url, SETTINGS, 2.0)


def test_a_bad_deny_list_entry_is_reported() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_DENY_TARGETS"):
        parse_deny_list("example.com:http")
    with pytest.raises(ValueError, match="WEBHOOK_DENY_TARGETS"):
        parse_deny_list("10.0.0.0/33")
