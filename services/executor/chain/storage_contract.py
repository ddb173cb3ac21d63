"""The part of Akave's Storage contract interface the gateway uses, written from its published
signatures (no artifact of Akave's is copied here), and how to decode its reverts.

Our development contract implements the same interface; the compatibility test runs the evm
backend against Akave's own deployment as well.
"""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

BUCKET_TUPLE = {
    "name": "",
    "type": "tuple",
    "components": [
        {"name": "id", "type": "bytes32"},
        {"name": "name", "type": "string"},
        {"name": "createdAt", "type": "uint256"},
        {"name": "owner", "type": "address"},
        {"name": "files", "type": "bytes32[]"},
    ],
}

ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "createBucket",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "bucketName", "type": "string"}],
        "outputs": [{"name": "", "type": "bytes32"}],
    },
    {
        "type": "function",
        "name": "getBucketByName",
        "stateMutability": "view",
        "inputs": [
            {"name": "name", "type": "string"},
            {"name": "owner", "type": "address"},
            {"name": "fileOffset", "type": "uint256"},
            {"name": "fileLimit", "type": "uint256"},
        ],
        "outputs": [BUCKET_TUPLE],
    },
    {
        "type": "event",
        "name": "CreateBucket",
        "anonymous": False,
        "inputs": [
            {"name": "id", "type": "bytes32", "indexed": True},
            {"name": "name", "type": "string", "indexed": True},
            {"name": "owner", "type": "address", "indexed": True},
        ],
    },
]

ERRORS = (
    "BucketAlreadyExists()",
    "BucketInvalid()",
    "BucketInvalidOwner()",
    "BucketNonempty()",
    "BucketNonexists()",
)


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


BUCKET_ALREADY_EXISTS = selector("BucketAlreadyExists()")  # 0x497ef2c2
CREATE_BUCKET_TOPIC = "0x" + keccak(text="CreateBucket(bytes32,string,address)").hex()
_ERROR_NAMES = {selector(signature): signature.split("(")[0] for signature in ERRORS}
_ERROR_NAMES[selector("Error(string)")] = "Error"
_ERROR_NAMES[selector("Panic(uint256)")] = "Panic"


def revert_name(data: str | None) -> str:
    """The custom error's name for revert data, else the data itself (or "no revert data")."""
    if not data or data == "0x":
        return "no revert data"
    return _ERROR_NAMES.get(data[:10].lower(), data[:10].lower())
