"""Signing keys: one from AKAVE_PRIVATE_KEY(_FILE), or a pool file with one key per line.

Each key is its own lane. A bucket name always maps to the same key of a given pool (a stable
hash, not Python's salted `hash`), so the same name never races itself across lanes; a view
still looks under every key of the pool, so a bucket is found after the pool changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount

from shared.secret_files import read_secret_file

if TYPE_CHECKING:
    from shared.settings import Settings


@dataclass(frozen=True)
class Signed:
    raw: str  # 0x hex
    tx_hash: str  # 0x hex, lower case


class Signer(Protocol):
    """What a lane signs with: a key of the pool, or a retired one that signs nothing."""

    address: str
    can_sign: bool

    def sign(self, transaction: dict[str, Any]) -> Signed: ...


class SigningKey:
    """A private key that signs locally; never printed (its repr shows the address only)."""

    can_sign = True

    def __init__(self, private_key: str) -> None:
        try:
            account: LocalAccount = Account.from_key(private_key.strip())
        except Exception:
            raise ValueError("a signing key is not a valid secp256k1 private key") from None
        self._account = account
        self.address: str = account.address

    def sign(self, transaction: dict[str, Any]) -> Signed:
        signed = self._account.sign_transaction(transaction)
        return Signed("0x" + signed.raw_transaction.hex(), "0x" + signed.hash.hex())

    def __repr__(self) -> str:
        return f"SigningKey(address={self.address})"


class RetiredKey:
    """The address of a key no longer in the pool, whose recorded transactions are still
    followed to their outcome (watch only: the same signed bytes, never a new signature)."""

    can_sign = False

    def __init__(self, address: str) -> None:
        self.address = address

    def sign(self, transaction: dict[str, Any]) -> Signed:
        raise RuntimeError(f"{self.address} is not in the key pool: nothing is signed with it")

    def __repr__(self) -> str:
        return f"RetiredKey(address={self.address})"


def read_key_pool(path: Path) -> list[str]:
    """The keys of a pool file (private to its owner), one a line; blank lines and # ignored."""
    text = read_secret_file(path, "CHAIN_KEY_POOL_FILE")
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ValueError("CHAIN_KEY_POOL_FILE holds no key")
    return keys


def keys_from_settings(settings: Settings) -> list[SigningKey]:
    """CHAIN_KEY_POOL_FILE's keys if set, else the one key of AKAVE_PRIVATE_KEY(_FILE)."""
    if settings.chain_key_pool_file is not None:
        secrets = read_key_pool(settings.chain_key_pool_file)
    else:
        key = settings.private_key()
        if not key:
            raise ValueError(
                "AKAVE_BACKEND=evm needs a signing key: set AKAVE_PRIVATE_KEY, "
                "AKAVE_PRIVATE_KEY_FILE, or CHAIN_KEY_POOL_FILE"
            )
        secrets = [key]
    keys = [SigningKey(secret) for secret in secrets]
    if len({key.address for key in keys}) != len(keys):
        raise ValueError("CHAIN_KEY_POOL_FILE names the same key twice")
    return keys


def key_index(name: str, pool_size: int) -> int:
    """The pool position that signs creates of `name`: stable across processes and restarts."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % pool_size


def key_for(name: str, keys: Sequence[SigningKey]) -> SigningKey:
    return keys[key_index(name, len(keys))]
