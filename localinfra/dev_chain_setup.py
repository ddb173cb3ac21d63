"""`python -m localinfra.dev_chain_setup`: a development chain in a container, made ready for
the gateway (compose.yaml's one-shot `chain-setup`, in the gateway's own image).

Waits for the node at CHAIN_RPC_URL, deploys our Storage contract unless it is there, and tops
up the signer, like `make run`'s dev chain (localinfra/chain.py). The contract is deployed
from a dedicated anvil account at its nonce 0, so its address is known in advance
(`DEV_CONTRACT_ADDRESS`, what compose.yaml gives every service): on a fresh chain it is
deployed there, on a chain that kept its state (the volume) it is already there. A chain
where that account was used for anything else is refused: the address would be wrong.

Only for anvil: it uses anvil's unlocked accounts and `anvil_setBalance`. The accounts are
anvil's public dev accounts (localinfra/dev_keys.py): PUBLIC TEST DATA.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import rlp
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from localinfra.anvil import AnvilError, rpc_call
from localinfra.chain import DEPLOYER, DEV_BALANCE_WEI, deploy_storage
from localinfra.dev_keys import DEV_ADDRESS

WAIT_S = 120


def create_address(sender: str, nonce: int) -> str:
    """The address a contract created by `sender` at `nonce` gets (CREATE)."""
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


DEV_CONTRACT_ADDRESS = create_address(DEPLOYER, 0)  # 0x700b6A60ce7EaaEA56F065753d8dcB9653dbAD35


class RemoteChain:
    def __init__(self, url: str) -> None:
        self.url = url

    def rpc(self, method: str, *params: Any, timeout: float = 10) -> Any:
        return rpc_call(self.url, method, *params, timeout=timeout)


def set_up(chain: RemoteChain, expected: str) -> str:
    """What was done; AnvilError when the chain cannot be made ready."""
    if chain.rpc("eth_getCode", expected, "latest") not in ("0x", None):
        done = f"Storage already at {expected}"
    else:
        nonce = int(chain.rpc("eth_getTransactionCount", DEPLOYER, "latest"), 16)
        if nonce != 0 or create_address(DEPLOYER, 0) != to_checksum_address(expected):
            raise AnvilError(
                f"no contract at {expected}, and the deployer {DEPLOYER} cannot put it there "
                f"(its nonce is {nonce}): start from a fresh chain (delete its volume)"
            )
        deployed = deploy_storage(chain)
        if to_checksum_address(deployed) != to_checksum_address(expected):
            raise AnvilError(f"Storage deployed at {deployed}, not {expected}")
        done = f"Storage deployed at {deployed}"
    if int(chain.rpc("eth_getBalance", DEV_ADDRESS, "latest"), 16) < DEV_BALANCE_WEI // 2:
        chain.rpc("anvil_setBalance", DEV_ADDRESS, hex(DEV_BALANCE_WEI))
        done += f"; {DEV_ADDRESS} topped up"
    return done


def main() -> int:
    url = os.environ.get("CHAIN_RPC_URL", "http://127.0.0.1:8545")
    expected = os.environ.get("CHAIN_CONTRACT_ADDRESS") or DEV_CONTRACT_ADDRESS
    chain = RemoteChain(url)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            chain.rpc("eth_chainId")
            break
        except AnvilError:
            if time.monotonic() > deadline:
                print(f"the chain at {url} did not answer in {WAIT_S} s", file=sys.stderr)
                return 1
            time.sleep(1)
    try:
        print(set_up(chain, expected), flush=True)
    except AnvilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
