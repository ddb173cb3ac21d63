"""The development chain behind `make run`: anvil with 2 s blocks, our Storage contract on it,
and a funded signer, surviving restarts.

`ensure_dev_chain()` starts anvil named `dev` with its state in `.local/anvil/dev/state.json`,
deploys the contract once and remembers its address (and the artifact it came from) in
`.local/anvil/dev/storage.json`. When the state was lost (the address has no code) or the
contract changed, it deploys again. Deployments come from an unlocked anvil account of its
own, so the signer's nonces belong to the gateway alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from localinfra.anvil import AnvilError, LocalAnvil
from localinfra.dev_keys import DEV_ACCOUNTS, DEV_ADDRESS, DEV_KEY
from shared import storage_contract

DEV_BLOCK_TIME_S = 2.0
DEV_PORT = 8545
# anvil writes its state this often (and on a clean stop): a hard kill loses at most this much
# chain, which `make run` then reports as the chain behind the log (localinfra/chain_behind.py)
DEV_STATE_INTERVAL_S = 1
DEPLOYER = DEV_ACCOUNTS[-1][0]  # anvil unlocks its dev accounts: eth_sendTransaction signs
# The signer is topped up to this when below half of it (anvil starts it with 10,000 ETH).
DEV_BALANCE_WEI = 10_000 * 10**18


class JsonRpc(Protocol):
    """A chain that answers JSON-RPC calls: a LocalAnvil, or a node at a URL."""

    def rpc(self, method: str, *params: Any, timeout: float = 10) -> Any: ...


@dataclass(frozen=True)
class DevChain:
    chain: LocalAnvil
    rpc_url: str
    chain_id: int
    contract_address: str
    private_key: str  # anvil's public dev key (localinfra/dev_keys.py), never a real one
    address: str


def ensure_dev_chain(
    repo_root: Path, port: int = DEV_PORT, block_time: float | None = DEV_BLOCK_TIME_S
) -> DevChain:
    """Start (or restart) the dev chain and make sure our contract and the signer are there.

    The caller owns the returned chain and stops it (`.chain.stop()`, which writes the state).
    """
    chain = LocalAnvil(
        repo_root,
        name="dev",
        port=port,
        block_time=block_time,
        state_file=Path(repo_root).resolve() / ".local" / "anvil" / "dev" / "state.json",
        state_interval=DEV_STATE_INTERVAL_S,
    )
    chain.start()
    try:
        address = _deployed_storage(chain)
        if chain.balance(DEV_ADDRESS) < DEV_BALANCE_WEI // 2:
            chain.set_balance(DEV_ADDRESS, DEV_BALANCE_WEI)
    except BaseException:
        chain.stop()
        raise
    return DevChain(chain, chain.rpc_url, chain.chain_id, address, DEV_KEY, DEV_ADDRESS)


def deploy_storage(chain: JsonRpc, deployer: str = DEPLOYER, timeout: float = 60) -> str:
    """Deploy our Storage contract from an unlocked account; its address once mined."""
    tx_hash = chain.rpc(
        "eth_sendTransaction",
        {"from": deployer, "data": storage_contract.bytecode(), "gas": hex(3_000_000)},
    )
    deadline = time.monotonic() + timeout
    while (receipt := chain.rpc("eth_getTransactionReceipt", tx_hash)) is None:
        if time.monotonic() > deadline:
            raise AnvilError(f"Storage deployment {tx_hash} not mined in {timeout} s")
        time.sleep(0.1)
    if int(receipt["status"], 16) != 1:
        raise AnvilError(f"Storage deployment {tx_hash} reverted")
    return str(receipt["contractAddress"])


def _deployed_storage(chain: LocalAnvil) -> str:
    record = chain.dir / "storage.json"
    code_hash = hashlib.sha256(storage_contract.bytecode().encode()).hexdigest()
    try:
        known = json.loads(record.read_text())
        if known["bytecodeSha256"] == code_hash and chain.code(known["address"]):
            return str(known["address"])
    except (OSError, ValueError, KeyError):
        pass
    address = deploy_storage(chain)
    record.write_text(json.dumps({"address": address, "bytecodeSha256": code_hash}) + "\n")
    return address
