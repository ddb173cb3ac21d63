"""The benchmarks' chain: a fresh anvil of the run's own with our Storage contract, and a key
pool of anvil's dev accounts (localinfra/dev_keys.py: PUBLIC TEST DATA, not secrets), funded
on the chain and handed to the executor as a CHAIN_KEY_POOL_FILE (mode 0600, removed
afterwards)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.infra import OUT, REPO
from localinfra.anvil import LocalAnvil
from localinfra.chain import DEPLOYER, deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS

BLOCK_TIME_S = 2.0
BLOCK_GAS = 30_000_000
POOL = DEV_ACCOUNTS[:4]  # anvil's public dev keys: public test data (localinfra/dev_keys.py)
FUND_WEI = 10_000 * 10**18


@dataclass(frozen=True)
class Chain:
    anvil: LocalAnvil
    contract: str
    chain_id: int


@contextlib.contextmanager
def local_chain(
    block_time: float | None = BLOCK_TIME_S, gas_limit: int = BLOCK_GAS
) -> Iterator[Chain]:
    """A fresh anvil of this run's own, our contract deployed, the pool's keys funded;
    `block_time` None automines (a block per transaction)."""
    anvil = LocalAnvil(
        REPO,
        name=f"bench-{os.getpid()}",
        block_time=block_time,
        gas_limit=gas_limit,
        fresh=True,
    )
    anvil.start()
    try:
        contract = deploy_storage(anvil, DEPLOYER)
        for address, _key in POOL:
            anvil.set_balance(address, FUND_WEI)
        yield Chain(anvil, contract, anvil.chain_id)
    finally:
        anvil.stop()
        shutil.rmtree(anvil.dir, ignore_errors=True)


@contextlib.contextmanager
def key_pool_file(keys: int) -> Iterator[Path]:
    """The first `keys` dev keys, one a line, in a 0600 file that is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="chain-keys-", dir=OUT))  # mode 0700
    path = folder / "pool"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{key}\n" for _address, key in POOL[:keys]))
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
