"""A local EVM chain: Foundry's anvil, installed from npm, run as a plain process.

`@foundry-rs/anvil-linux-amd64` ships the `anvil` binary inside the npm package, so npm (on our
machines and in CI) is all it takes: `ensure_binary()` installs the pinned version once into
`.local/anvil/npm/` (see localinfra/npm.py). Each named chain keeps its files in
`.local/anvil/<name>/` (log, pid and, when asked, the state file), so a dev chain and test
chains run side by side on different ports.

Block time: `None` mines one block per transaction (automine, for fast unit tests); a number
mines a block every that many seconds whether or not there are transactions (the dev run, the
benchmarks and timing tests use 2 s). With a `state_file` anvil loads it on start and writes it
every `state_interval` seconds and on a clean exit, so a dev chain keeps its buckets across
restarts; after a SIGKILL up to `state_interval` seconds of chain are lost.

Stdlib only, like the rest of `localinfra`: JSON-RPC goes over urllib.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from localinfra.npm import NpmError, ensure_package
from localinfra.process import HOST, DetachedProcess, LocalServer, free_port, port_open

ANVIL_VERSION = "1.7.1"
NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64"
DEV_CHAIN_ID = 31337  # anvil's default


class AnvilError(RuntimeError):
    """The local chain could not be installed, started, stopped or asked something."""


class RpcError(AnvilError):
    """The chain answered a JSON-RPC call with an error object."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


def ensure_binary(root: Path) -> Path:
    """The pinned anvil binary, installed from npm into `.local/anvil/npm` the first time."""
    try:
        return ensure_package(
            Path(root).resolve() / ".local" / "anvil", NPM_PACKAGE, ANVIL_VERSION, "bin/anvil",
            _check_binary,
        )  # fmt: skip
    except NpmError as exc:
        raise AnvilError(str(exc)) from exc


def _check_binary(binary: Path) -> None:
    binary.chmod(binary.stat().st_mode | 0o111)
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    version = (result.stdout or result.stderr).strip()
    if ANVIL_VERSION not in version:
        raise NpmError(f"npm installed anvil {version!r}, expected {ANVIL_VERSION}")


class LocalAnvil(LocalServer):
    """One named local chain; `start()`/`stop()` may alternate any number of times.

    `port=None` picks a free port on the first start and keeps it for restarts (an outage
    test stops the chain and starts it again where its clients expect it). `fresh=True`
    deletes the state file on the first `start()` only. `stop()` (SIGTERM) writes the state
    file; after `kill()` the state since the last interval dump is lost. The process
    (localinfra/process.py) dies with this Python process when started from the main thread,
    so a crashed test run leaves no chain behind; a chain started from another thread and
    left behind is ended by the next `start()` of the same name.
    """

    def __init__(
        self,
        root: Path,
        *,
        name: str = "dev",
        port: int | None = None,
        block_time: float | None = None,
        state_file: Path | None = None,
        state_interval: int = 5,
        gas_limit: int | None = None,
        fresh: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        self.name = name
        self.port = port or 0
        self.block_time = block_time
        self.state_file = Path(state_file).resolve() if state_file is not None else None
        self.state_interval = state_interval
        self.gas_limit = gas_limit
        self.fresh = fresh
        self.dir = self.root / ".local" / "anvil" / name
        self._process = DetachedProcess(
            self.dir, "anvil", label=f"anvil {name!r}", error=AnvilError, is_ours=self._is_ours
        )
        self.log_file = self._process.log_file
        self.pid_file = self._process.pid_file
        self._chain_id: int | None = None

    @property
    def rpc_url(self) -> str:
        if not self.port:
            raise AnvilError(f"anvil chain {self.name!r} has no port before start()")
        return f"http://{HOST}:{self.port}"

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.rpc("eth_chainId"), 16)
        return self._chain_id

    def start(self, timeout: float = 60) -> None:
        """Start the chain (installing anvil first if needed) and wait until it answers."""
        deadline = time.monotonic() + timeout
        if self.is_running():
            self.stop()
        self._process.end_leftover()
        binary = ensure_binary(self.root)
        if self.fresh:
            if self.state_file is not None:
                self.state_file.unlink(missing_ok=True)
            self.fresh = False  # later restarts keep the state
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # kept across restarts: clients reconnect
        if port_open(self.port):
            raise AnvilError(f"port {self.port} is already in use by another process")
        self._chain_id = None
        self._launch(
            [str(binary), *self._args()],
            lambda pid: self._wait_ready(pid, deadline),
            die_with_parent=True,
        )

    # -- JSON-RPC ----------------------------------------------------------------------------

    def rpc(self, method: str, *params: Any, timeout: float = 10) -> Any:
        """One JSON-RPC call; the `result`, or RpcError with the chain's error."""
        return rpc_call(self.rpc_url, method, *params, timeout=timeout)

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)

    def nonce(self, address: str, block: str = "latest") -> int:
        return int(self.rpc("eth_getTransactionCount", address, block), 16)

    def code(self, address: str) -> bytes:
        return bytes.fromhex(self.rpc("eth_getCode", address, "latest")[2:])

    # The fault levers tests pull. Amounts in wei, hashes and addresses as 0x-hex strings.

    def drop_transaction(self, tx_hash: str) -> None:
        """Remove one transaction from the mempool (as a node that evicted it)."""
        self.rpc("anvil_dropTransaction", tx_hash)

    def drop_all_transactions(self) -> None:
        self.rpc("anvil_dropAllTransactions")

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    def set_nonce(self, address: str, nonce: int) -> None:
        self.rpc("anvil_setNonce", address, hex(nonce))

    def set_next_block_base_fee(self, wei: int) -> None:
        self.rpc("anvil_setNextBlockBaseFeePerGas", hex(wei))

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", enabled)

    def set_interval_mining(self, seconds: int) -> None:
        """Mine every `seconds` (0 stops interval mining)."""
        self.rpc("evm_setIntervalMining", seconds)

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def reorg(self, depth: int, txs: list[tuple[str, int]] | None = None) -> None:
        """Replace the last `depth` blocks; `txs` are (signed raw tx hex, block offset) pairs
        to include in the new blocks. Reorged-out transactions do not return to the pool."""
        self.rpc("anvil_reorg", depth, [list(pair) for pair in txs or []])

    def __repr__(self) -> str:
        return f"LocalAnvil(name={self.name!r}, port={self.port}, block_time={self.block_time})"

    # -- internals ---------------------------------------------------------------------------

    def _args(self) -> list[str]:
        args = ["--host", HOST, "--port", str(self.port), "--silent"]
        if self.block_time is not None:
            args += ["--block-time", _seconds(self.block_time)]
        if self.gas_limit is not None:
            args += ["--gas-limit", str(self.gas_limit)]
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["--state", str(self.state_file), "--state-interval", str(self.state_interval)]
        return args

    def _wait_ready(self, pid: int, deadline: float) -> None:
        while True:
            if not self._process.alive(pid):
                raise AnvilError(
                    f"anvil chain {self.name!r} exited during startup (code "
                    f"{self._process.returncode}); log {self.log_file}:\n{self.log_tail()}"
                )
            with contextlib.suppress(AnvilError):
                self._chain_id = int(self.rpc("eth_chainId", timeout=2), 16)
                return
            if time.monotonic() > deadline:
                raise AnvilError(
                    f"anvil chain {self.name!r} not ready on {self.rpc_url} in time; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _is_ours(self, pid: int) -> bool:
        """An anvil running in this chain's folder (pid files go stale, pids get reused)."""
        try:
            exe = Path(f"/proc/{pid}/exe").resolve()
            return exe.name == "anvil" and Path(f"/proc/{pid}/cwd").resolve() == self.dir
        except OSError:
            return False


def rpc_call(url: str, method: str, *params: Any, timeout: float = 10) -> Any:
    """One JSON-RPC call to the node at `url`; the `result`, or RpcError with its error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except (OSError, urllib.error.URLError) as exc:
        raise AnvilError(f"{method}: the chain at {url} did not answer: {exc}") from exc
    if "error" in answer:
        error = answer["error"]
        raise RpcError(method, error.get("code", 0), error.get("message", ""), error.get("data"))
    return answer.get("result")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
