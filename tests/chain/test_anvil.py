"""The local chain (localinfra/anvil.py): installs itself, starts, answers, pulls each fault
lever the chain tests rely on, keeps state across restarts, and leaves no process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from localinfra.anvil import (
    ANVIL_VERSION,
    DEV_CHAIN_ID,
    LocalAnvil,
    RpcError,
    ensure_binary,
)
from localinfra.dev_keys import DEV_ACCOUNTS
from localinfra.process import process_running
from tests.chain.fixtures import REPO, AnvilFactory

SINK = "0x000000000000000000000000000000000000dEaD"


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while process_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def transfer(chain: LocalAnvil, key_index: int, nonce: int, fee_cap: int | None = None) -> str:
    """A signed 1-wei transfer from a dev account, as raw hex."""
    key = DEV_ACCOUNTS[key_index][1]
    tx = {
        "to": SINK,
        "value": 1,
        "gas": 21_000,
        "nonce": nonce,
        "chainId": chain.chain_id,
        "maxFeePerGas": fee_cap or 10 * int(chain.rpc("eth_gasPrice"), 16),
        "maxPriorityFeePerGas": 1,
    }
    return "0x" + Account.sign_transaction(tx, key).raw_transaction.hex()


def send(chain: LocalAnvil, raw: str) -> str:
    return str(chain.rpc("eth_sendRawTransaction", raw))


def receipt(chain: LocalAnvil, tx_hash: str) -> dict[str, str] | None:
    result = chain.rpc("eth_getTransactionReceipt", tx_hash)
    return result if result is None else dict(result)


def wait_receipt(chain: LocalAnvil, tx_hash: str, timeout: float = 5) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while (found := receipt(chain, tx_hash)) is None:
        assert time.monotonic() < deadline, f"{tx_hash} not mined in {timeout} s"
        time.sleep(0.05)
    return found


@pytest.mark.slow
def test_installs_from_scratch(tmp_path: Path) -> None:
    binary = ensure_binary(tmp_path)
    assert binary.is_relative_to(tmp_path / ".local" / "anvil")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert ANVIL_VERSION in version
    assert ensure_binary(tmp_path) == binary  # the second call only checks the stamp


def test_answers_with_the_dev_chain_and_its_public_accounts(anvil_chain: LocalAnvil) -> None:
    assert anvil_chain.chain_id == DEV_CHAIN_ID
    accounts = anvil_chain.rpc("eth_accounts")
    assert accounts == [address.lower() for address, _ in DEV_ACCOUNTS]
    for address, key in DEV_ACCOUNTS:
        assert Account.from_key(key).address == address
        assert anvil_chain.balance(address) > 0


def test_automine_mines_each_transaction_at_once(anvil_chain: LocalAnvil) -> None:
    address = DEV_ACCOUNTS[1][0]
    before = anvil_chain.block_number()
    tx_hash = send(anvil_chain, transfer(anvil_chain, 1, anvil_chain.nonce(address, "pending")))
    mined = wait_receipt(anvil_chain, tx_hash, timeout=2)
    assert int(mined["status"], 16) == 1
    assert anvil_chain.block_number() == before + 1


def test_levers(anvil_factory: AnvilFactory) -> None:
    chain = anvil_factory(block_time=None)
    address = DEV_ACCOUNTS[2][0]

    chain.set_balance(address, 12345)
    assert chain.balance(address) == 12345
    with pytest.raises(RpcError):  # cannot pay for gas any more
        send(chain, transfer(chain, 2, chain.nonce(address)))
    chain.set_balance(address, 10**21)

    chain.set_nonce(address, 7)
    assert chain.nonce(address) == 7

    chain.set_automine(False)
    first = send(chain, transfer(chain, 2, 7))
    chain.drop_transaction(first)
    assert chain.rpc("eth_getTransactionByHash", first) is None
    send(chain, transfer(chain, 2, 7))
    send(chain, transfer(chain, 2, 8))
    chain.drop_all_transactions()
    assert chain.nonce(address, "pending") == 7

    again = send(chain, transfer(chain, 2, 7))
    assert receipt(chain, again) is None  # no automine: pending until a block is mined
    height = chain.block_number()
    chain.mine(2)
    assert chain.block_number() == height + 2
    mined = wait_receipt(chain, again)
    assert int(mined["blockNumber"], 16) == height + 1

    chain.reorg(2)  # both blocks replaced: the transfer's receipt is gone, the nonce goes back
    assert receipt(chain, again) is None
    assert chain.nonce(address) == 7

    base_fee = int(chain.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    stuck = send(chain, transfer(chain, 2, 7, fee_cap=base_fee + 10))
    chain.set_next_block_base_fee(50 * base_fee + 50)
    chain.mine()
    assert receipt(chain, stuck) is None  # priced out

    chain.set_interval_mining(1)
    height = chain.block_number()
    time.sleep(2.5)
    assert chain.block_number() >= height + 2


def test_block_time(anvil_factory: AnvilFactory) -> None:
    chain = anvil_factory(block_time=2.0)
    address = DEV_ACCOUNTS[3][0]
    tx_hash = send(chain, transfer(chain, 3, chain.nonce(address)))
    assert receipt(chain, tx_hash) is None  # waits for the next block, not mined on arrival
    start = chain.block_number()
    time.sleep(4.5)
    assert chain.block_number() - start in (2, 3)
    wait_receipt(chain, tx_hash, timeout=0.5)


def test_state_survives_a_clean_restart(anvil_factory: AnvilFactory, tmp_path: Path) -> None:
    chain = anvil_factory(block_time=None, state_file=tmp_path / "state.json")
    address = DEV_ACCOUNTS[4][0]
    chain.set_balance(address, 4242)
    chain.mine(3)
    height = chain.block_number()
    url = chain.rpc_url
    chain.stop()
    assert chain.pid is None
    chain.start()
    assert chain.rpc_url == url  # same port: clients reconnect to the restarted chain
    assert chain.block_number() == height
    assert chain.balance(address) == 4242


def test_stop_leaves_no_process(anvil_factory: AnvilFactory) -> None:
    chain = anvil_factory(block_time=1.0)
    pid = chain.pid
    assert pid is not None and process_running(pid)
    chain.stop()
    assert not process_running(pid)
    assert not chain.pid_file.exists()


STARTER = """
import os, sys
from pathlib import Path
from localinfra.anvil import LocalAnvil
chain = LocalAnvil(Path(sys.argv[1]), name=sys.argv[2], block_time=1)
chain.start()
print(chain.pid, flush=True)
os._exit(0)  # the parent dies without stopping its chain
"""


def test_a_dying_parent_takes_its_chain_along() -> None:
    name = f"test-{os.getpid()}-orphan"
    out = subprocess.run(
        [sys.executable, "-c", STARTER, str(REPO), name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pid = int(out.stdout.strip())
    try:
        assert wait_gone(pid), f"anvil {pid} outlived the process that started it"
    finally:
        shutil.rmtree(REPO / ".local" / "anvil" / name, ignore_errors=True)


THREAD_STARTER = """
import os, sys, threading
from pathlib import Path
from localinfra.anvil import LocalAnvil
chain = LocalAnvil(Path(sys.argv[1]), name=sys.argv[2], block_time=1)
starter = threading.Thread(target=chain.start)  # off the main thread: no PR_SET_PDEATHSIG
starter.start()
starter.join()
print(chain.pid, flush=True)
os._exit(0)
"""


def test_the_next_start_ends_a_chain_left_behind_by_a_dead_process() -> None:
    name = f"test-{os.getpid()}-left"
    out = subprocess.run(
        [sys.executable, "-c", THREAD_STARTER, str(REPO), name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    orphan = int(out.stdout.strip())
    chain = LocalAnvil(REPO, name=name, block_time=1)
    try:
        chain.start()
        assert not process_running(orphan)
        assert chain.pid != orphan
    finally:
        chain.stop()
        if process_running(orphan):  # only if the test failed: leave nothing behind
            os.kill(orphan, 9)
        shutil.rmtree(chain.dir, ignore_errors=True)
