"""Our development Storage contract's compiled artifact (`shared/storage_contract.json`, built
from `contracts/evm/Storage.sol`; package data, so the installed gateway and its image have it).

One artifact for everyone: the executor's chain backend reads the ABI (Akave's Storage has the
same ABI for every call we make, so it serves Akave's network too), localinfra reads the
bytecode to deploy the contract on a development chain. `python -m localinfra.solc` writes it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACT = Path(__file__).resolve().with_suffix(".json")
# The custom error a second createBucket of the same name by the same owner reverts with.
BUCKET_ALREADY_EXISTS = bytes.fromhex("497ef2c2")


@cache
def artifact() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ARTIFACT.read_text())
    return loaded


def abi() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = artifact()["abi"]
    return entries


def bytecode() -> str:
    """The init code, 0x-hex: what a deployment transaction carries."""
    code: str = artifact()["bytecode"]
    return code
