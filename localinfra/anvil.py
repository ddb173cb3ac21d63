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
import ctypes
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from localinfra.npm import NpmError, ensure_package

HOST = "127.0.0.1"
ANVIL_VERSION = "1.7.1"
NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64"
DEV_CHAIN_ID = 31337  # anvil's default
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it


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


class LocalAnvil:
    """One named local chain; `start()`/`stop()` may alternate any number of times.

    `port=None` picks a free port on the first start and keeps it for restarts (an outage
    test stops the chain and starts it again where its clients expect it). `fresh=True`
    deletes the state file on the first `start()` only. The process leads its own process
    group and, when started from the main thread, gets SIGTERM if this Python process dies
    (PR_SET_PDEATHSIG), so a crashed test run leaves no chain behind. (The signal follows the
    *thread* that started it, hence main thread only; from another thread only `stop()` and
    the process group remain, and the next `start()` of the same name ends the orphan.)
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
        self.log_file = self.dir / "anvil.log"
        self.pid_file = self.dir / "anvil.pid"
        self._proc: subprocess.Popen[bytes] | None = None
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

    @property
    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 60) -> None:
        """Start the chain (installing anvil first if needed) and wait until it answers."""
        deadline = time.monotonic() + timeout
        if self.is_running():
            self.stop()
        self._kill_orphan()
        binary = ensure_binary(self.root)
        if self.fresh:
            if self.state_file is not None:
                self.state_file.unlink(missing_ok=True)
            self.fresh = False  # later restarts keep the state
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()  # kept across restarts: clients reconnect
        if _port_open(self.port):
            raise AnvilError(f"port {self.port} is already in use by another process")
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with open(self.log_file, "wb") as log:
            self._proc = subprocess.Popen(
                [str(binary), *self._args()],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches it, Ctrl-C doesn't
                preexec_fn=_die_with_parent if _on_main_thread() else None,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self._chain_id = None
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Shut down cleanly (SIGTERM: a state file is written); SIGKILL after `timeout`."""
        self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash the chain (SIGKILL): state since the last interval dump is lost."""
        self._terminate(signal.SIGKILL, 0)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- JSON-RPC ----------------------------------------------------------------------------

    def rpc(self, method: str, *params: Any, timeout: float = 10) -> Any:
        """One JSON-RPC call; the `result`, or RpcError with the chain's error."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        request = urllib.request.Request(
            self.rpc_url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except (OSError, urllib.error.URLError) as exc:
            raise AnvilError(f"{method}: anvil at {self.rpc_url} did not answer: {exc}") from exc
        if "error" in answer:
            error = answer["error"]
            raise RpcError(
                method, error.get("code", 0), error.get("message", ""), error.get("data")
            )
        return answer.get("result")

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise AnvilError(
                    f"anvil chain {self.name!r} exited during startup (code "
                    f"{self._proc.returncode}); log {self.log_file}:\n{self.log_tail()}"
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

    def _kill_orphan(self) -> None:
        """A chain of this name that an earlier process left behind (started off the main
        thread, so not killed with it) holds its state file: end it before starting anew.
        Pid files go stale and pids get reused: only an anvil running in our folder counts."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            exe = Path(f"/proc/{pid}/exe").resolve()
            if exe.name == "anvil" and Path(f"/proc/{pid}/cwd").resolve() == self.dir:
                _signal_group(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while process_running(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if process_running(pid):
                    _signal_group(pid, signal.SIGKILL)

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired as exc:
                    raise AnvilError(
                        f"anvil {self.name!r} (pid {proc.pid}) survived SIGKILL"
                    ) from exc
        self.pid_file.unlink(missing_ok=True)
        self._proc = None


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def process_running(pid: int) -> bool:
    """Alive, not a zombie waiting for its new parent (init) to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0
