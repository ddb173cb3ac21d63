"""Where a webhook may point: absolute http(s) URLs without credentials, and never at the
gateway's own services (the API, the Kafka brokers, Postgres, plus WEBHOOK_DENY_TARGETS).

Host names are resolved and addresses compared, so `localhost`, `127.0.0.0/8`, `::1`,
`0.0.0.0`, `::` and this machine's own addresses all count as one host. It is a guard against
pointing the gateway at itself, checked on registration and again before each request, not a
network sandbox: put the notifier behind an egress proxy or firewall for that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from shared.errors import TargetRefused as TargetRefused
from shared.errors import TargetUnresolvable as TargetUnresolvable
from shared.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2000
LOCAL = "this-host"
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    host: str
    port: int


def parse_url(url: str) -> Target:
    """The host and port of an acceptable URL; raises `TargetRefused` with the reason."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise TargetRefused("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url is not valid: {exc}") from exc
    if parts.scheme not in DEFAULT_PORTS:
        raise TargetRefused("url must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url must not contain credentials")
    if not parts.hostname:
        raise TargetRefused("url must name a host")
    return Target(parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme])


def _key(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified or str(address) in _own_addresses():
        return LOCAL
    return str(address)


@lru_cache(maxsize=1)
def _own_addresses() -> frozenset[str]:
    """The addresses this machine's name resolves to (the API may listen on all of them)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return frozenset()
    return frozenset(str(info[4][0]).split("%")[0] for info in infos)


async def resolve(host: str, timeout_s: float) -> list[IPAddress]:
    """Every address of `host` (a literal address resolves to itself)."""
    host = host.strip("[]")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    if host == "localhost" or host.endswith(".localhost"):
        return [ipaddress.ip_address("127.0.0.1")]
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


@dataclass(frozen=True)
class _Denied:
    what: str
    keys: frozenset[str]
    port: int | None  # None: every port
    network: IPNetwork | None = None


def parse_deny_list(text: str) -> list[tuple[str, int | None] | IPNetwork]:
    """WEBHOOK_DENY_TARGETS as rules; raises ValueError on a bad entry (checked at start-up)."""
    rules: list[tuple[str, int | None] | IPNetwork] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            rules.append(
                ipaddress.ip_network(entry, strict=False)
                if "/" in entry
                else _split_host_port(entry)
            )
        except ValueError as exc:
            raise ValueError(f"WEBHOOK_DENY_TARGETS entry {entry!r} is not valid: {exc}") from exc
    return rules


async def _denied(settings: Settings, timeout_s: float) -> list[_Denied]:
    entries: list[tuple[str, str, int | None]] = [
        ("the gateway API", settings.api_host, settings.api_port)
    ]
    for server in settings.kafka_bootstrap_servers.split(","):
        if server.strip():
            host, port = _split_host_port(server.strip())
            entries.append(("a Kafka broker", host, port or 9092))
    database = make_url(settings.database_url)
    if database.host:
        entries.append(("the database", database.host, database.port or 5432))
    denied: list[_Denied] = []
    for rule in parse_deny_list(settings.webhook_deny_targets):
        if isinstance(rule, tuple):
            entries.append(("a denied target", *rule))
        else:
            denied.append(_Denied("a denied network", frozenset(), None, rule))
    for what, host, port in entries:
        try:
            keys = frozenset(_key(a) for a in await resolve(host, timeout_s))
        except (OSError, TimeoutError):
            keys = frozenset({host.lower()})  # unresolvable now: compare by name
        denied.append(_Denied(what, keys, port))
    return denied


def _refusal(addresses: Iterable[IPAddress], port: int, denied: list[_Denied]) -> str | None:
    addresses = list(addresses)
    keys = {_key(a) for a in addresses}
    for rule in denied:
        if rule.port is not None and rule.port != port:
            continue
        if rule.network is not None:
            if any(a.version == rule.network.version and a in rule.network for a in addresses):
                return rule.what
        elif keys & rule.keys:
            return rule.what
    return None


_DENIED_TTL_S = 60.0
_denied_cache: dict[tuple[str, ...], tuple[float, list[_Denied]]] = {}


async def _denied_cached(settings: Settings, timeout_s: float) -> list[_Denied]:
    """The rules, resolved at most once a minute per configuration (checked on every send)."""
    key = (
        settings.api_host,
        str(settings.api_port),
        settings.kafka_bootstrap_servers,
        settings.database_url,
        settings.webhook_deny_targets,
    )
    now = time.monotonic()
    cached = _denied_cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    rules = await _denied(settings, timeout_s)
    _denied_cache[key] = (now + _DENIED_TTL_S, rules)
    return rules


async def check_target(url: str, settings: Settings, timeout_s: float) -> Target:
    """Refuse (`TargetRefused`) a malformed URL or one that reaches the gateway's own services.

    A host that does not resolve is refused too; a resolver that does not answer in
    `timeout_s` raises `TimeoutError` (an outage, not the client's fault).
    """
    target = parse_url(url)
    try:
        addresses = await resolve(target.host, timeout_s)
    except (OSError, UnicodeError) as exc:  # UnicodeError: not a name IDNA can encode
        raise TargetUnresolvable(f"url host {target.host!r} does not resolve") from exc
    what = _refusal(addresses, target.port, await _denied_cached(settings, timeout_s))
    if what is not None:
        raise TargetRefused(f"url points at {what}; webhooks may not target the gateway itself")
    return target
