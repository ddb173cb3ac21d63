"""The dev run's chain (localinfra/chain.py): contract deployed once and remembered, state kept
across restarts, deployed again when the state is lost, the signer funded."""

from __future__ import annotations

import shutil
from pathlib import Path

from eth_account import Account

from localinfra.anvil import ensure_binary
from localinfra.chain import DEV_BALANCE_WEI, ensure_dev_chain
from localinfra.dev_keys import DEV_ADDRESS
from shared import storage_contract
from tests.chain.fixtures import REPO
from tests.support.stack import free_port


def dev_root(tmp_path: Path) -> Path:
    """A repo root of the test's own that shares the installed anvil (no second npm install)."""
    ensure_binary(REPO)
    cache = tmp_path / ".local" / "anvil"
    cache.mkdir(parents=True)
    installed = REPO / ".local" / "anvil"
    (cache / "npm").symlink_to(installed / "npm")
    shutil.copy(installed / "npm.stamp", cache / "npm.stamp")
    return tmp_path


def test_deploys_once_keeps_state_and_redeploys_when_the_state_is_lost(tmp_path: Path) -> None:
    root = dev_root(tmp_path)
    port = free_port()
    dev = ensure_dev_chain(root, port, block_time=None)
    try:
        assert dev.rpc_url == f"http://127.0.0.1:{port}" and dev.chain_id == 31337
        assert Account.from_key(dev.private_key).address == dev.address == DEV_ADDRESS
        assert dev.chain.code(dev.contract_address)
        assert dev.chain.balance(dev.address) >= DEV_BALANCE_WEI // 2
        dev.chain.set_balance(dev.address, 0)
        height = dev.chain.block_number()
    finally:
        dev.chain.stop()
    assert (root / ".local" / "anvil" / "dev" / "state.json").is_file()

    again = ensure_dev_chain(root, port, block_time=None)
    try:
        assert again.contract_address == dev.contract_address  # not deployed a second time
        assert again.chain.block_number() == height
        assert again.chain.balance(dev.address) == DEV_BALANCE_WEI  # funded again
    finally:
        again.chain.stop()

    (root / ".local" / "anvil" / "dev" / "state.json").unlink()  # the chain's state is lost
    fresh = ensure_dev_chain(root, port, block_time=None)
    try:
        assert fresh.chain.code(fresh.contract_address)
        assert fresh.chain.block_number() <= 2  # a new chain: just the deployment
        code = fresh.chain.code(fresh.contract_address)
        assert code and code.hex() in storage_contract.bytecode()  # our runtime code
    finally:
        fresh.chain.stop()
    assert fresh.chain.pid is None
