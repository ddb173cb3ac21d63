"""API keys: the configured keys (names, SHA-256 digests, scopes), lookup, and `apikey new`.

Keys are random 256-bit tokens, so a plain SHA-256 of the token is a safe thing to store: no
dictionary or brute force can reverse it, and a slow password hash would only cost every
request time (see docs/decisions.md). The configuration never holds a usable key.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.api.errors import ApiKeyConfigError

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = ("read", "write")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_PREFIX = "akgw_"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    scope: Scope

    def allows(self, method: str) -> bool:
        """`read` keys may only use safe methods; `write` keys may use every method."""
        return self.scope == "write" or method.upper() in SAFE_METHODS

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, scope={self.scope!r})"


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh key: 32 random bytes, URL-safe, with a prefix that makes leaked keys greppable."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_entries(text: str, source: str) -> list[ApiKey]:
    """Entries separated by commas or new lines; blank entries and `#` comments are skipped."""
    keys: list[ApiKey] = []
    for line in text.splitlines():
        for raw in line.split("#", 1)[0].split(","):
            entry = raw.strip()
            if entry:
                keys.append(_parse_entry(entry, f"{source} entry {len(keys) + 1}"))
    return keys


def _parse_entry(entry: str, source: str) -> ApiKey:
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        # Not echoed: a key pasted where its digest belongs must not reach a log.
        raise ApiKeyConfigError(f"{source} is not name:sha256hex[:scope]")
    name, digest = parts[0], parts[1].lower()
    scope = parts[2] if len(parts) == 3 else "write"
    if not _NAME.match(name):
        raise ApiKeyConfigError(f"{source}: key name {name!r} must be 1-64 of [A-Za-z0-9_.-]")
    if not _DIGEST.match(digest):
        raise ApiKeyConfigError(
            f"{source}: key {name!r} needs the SHA-256 of the key as 64 hex digits "
            "(`akave-gateway apikey new` prints it), not the key itself"
        )
    if scope not in SCOPES:
        raise ApiKeyConfigError(f"{source}: key {name!r} has scope {scope!r}; use read or write")
    return ApiKey(name, bytes.fromhex(digest), scope)


class KeyRing:
    """The configured keys; empty means the API is open (no `Authorization` needed)."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)
        names = [k.name for k in self._keys]
        if len(set(names)) != len(names):
            raise ApiKeyConfigError("API keys: every key needs a name of its own")
        if len({k.digest for k in self._keys}) != len(self._keys):
            raise ApiKeyConfigError("API keys: the same key is configured twice")

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def find(self, token: str) -> ApiKey | None:
        """The key whose digest matches `token`; every digest is compared in constant time."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def load_key_ring(api_keys: str, api_keys_file: Path | None) -> KeyRing:
    """The keys of API_KEYS and of API_KEYS_FILE together."""
    keys = parse_entries(api_keys, "API_KEYS")
    if api_keys_file is not None:
        try:
            text = api_keys_file.read_text()
        except OSError as exc:
            raise ApiKeyConfigError(
                f"API_KEYS_FILE: cannot read {api_keys_file}: {exc.strerror or exc}"
            ) from None
        keys += parse_entries(text, f"API_KEYS_FILE {api_keys_file}")
    return KeyRing(keys)


# `akave-gateway apikey ...` ------------------------------------------------------------------


def add_apikey_commands(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    new = actions.add_parser("new", help="print a fresh API key once, and its configuration line")
    new.add_argument("--name", help="a name for the key (default: a random one)")
    new.add_argument(
        "--scope",
        choices=SCOPES,
        default="write",
        help="read: GET/HEAD/OPTIONS only; write: every method (default)",
    )


def run_apikey_command(args: argparse.Namespace) -> int:
    name = args.name or f"key-{secrets.token_hex(3)}"
    if not _NAME.match(name):
        print(f"--name {name!r}: use 1-64 of [A-Za-z0-9_.-]")
        return 2
    token = new_token()
    print(f"API key (shown once; store it only where the client keeps secrets):\n{token}\n")
    print("Add this entry to API_KEYS (comma-separated) or as a line of API_KEYS_FILE:")
    print(f"{name}:{digest_of(token)}:{args.scope}")
    return 0
