"""Names for the Storage contract's custom errors and its CreateBucket log, from the ABI in
`shared.storage_contract` (the same for our development contract and Akave's own)."""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_utils.crypto import keccak

from shared import storage_contract


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def _signature(entry: dict[str, Any]) -> str:
    types = ",".join(str(arg["type"]) for arg in entry.get("inputs") or [])
    return f"{entry['name']}({types})"


BUCKET_ALREADY_EXISTS = "0x" + storage_contract.BUCKET_ALREADY_EXISTS.hex()  # 0x497ef2c2
CREATE_BUCKET_TOPIC = "0x" + keccak(text="CreateBucket(bytes32,string,address)").hex()
CREATE_BUCKET = selector("createBucket(string)")


@cache
def _error_names() -> dict[str, str]:
    names = {
        selector(_signature(entry)): str(entry["name"])
        for entry in storage_contract.abi()
        if entry["type"] == "error"
    }
    names[selector("Error(string)")] = "Error"
    names[selector("Panic(uint256)")] = "Panic"
    return names


def revert_name(data: str) -> str:
    """The custom error's name for revert data; else its selector, or what went wrong."""
    if not data.startswith("0x"):
        return data  # "out of gas", "not reproducible"
    if data == "0x":
        return "no revert data"
    return _error_names().get(data[:10].lower(), data[:10].lower())
