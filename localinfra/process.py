"""A local server run as a detached process: the supervision the broker and the chain share.

The process leads its own process group (a Ctrl-C in the terminal does not reach it, a stop
reaches everything it forked), writes to one log file (the previous run's kept as `.log.1`)
and is named in a pid file, so a later process can find it. Stopping is SIGTERM to the group,
then SIGKILL after a timeout. Pid files go stale and pids get reused: a pid read from the file
counts only if `is_ours(pid)` says it is this server.

Stdlib only, like the rest of `localinfra`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"  # not "localhost": it may resolve to ::1 while the servers listen on IPv4
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it


class DetachedProcess:
    """One server process of a local component; `launch()`/`stop()` may alternate.

    `adopt=True`: a live process named in the pid file counts as this one (`pid`, `stop()`)
    even if an earlier Python process started it. `adopt=False`: only the process this object
    launched counts; `end_leftover()` ends one an earlier process left behind.
    """

    def __init__(
        self,
        folder: Path,
        stem: str,
        *,
        label: str,
        error: type[Exception],
        is_ours: Callable[[int], bool],
        adopt: bool = False,
    ) -> None:
        self.dir = folder
        self.log_file = folder / f"{stem}.log"
        self.pid_file = folder / f"{stem}.pid"
        self.label = label
        self._error = error
        self._is_ours = is_ours
        self._adopt = adopt
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        if self._adopt:
            pid = self._pid_from_file()
            if pid is not None and self._is_ours(pid):
                return pid
        return None

    @property
    def returncode(self) -> int | None:
        """The exit code of the process this object launched, once it has exited."""
        return self._proc.poll() if self._proc is not None else None

    def alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return process_running(pid) and self._is_ours(pid)

    def launch(self, cmd: Sequence[str], *, die_with_parent: bool = False) -> int:
        """Start `cmd` in `dir`, detached, output to the log file; its pid.

        `die_with_parent`: the process gets SIGTERM when this Python process dies
        (PR_SET_PDEATHSIG). The signal follows the *thread* that started it, so it is only
        asked for from the main thread; from another thread only `stop()` and the pid file
        (`end_leftover()`) remain.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with open(self.log_file, "wb") as log:
            self._proc = subprocess.Popen(
                list(cmd),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches it, Ctrl-C doesn't
                preexec_fn=_die_with_parent if die_with_parent and _on_main_thread() else None,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        return self._proc.pid

    def stop(self, timeout: float) -> None:
        """SIGTERM to the process group; SIGKILL if it is not gone after `timeout`."""
        self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL to the process group at once (a crash)."""
        self._terminate(signal.SIGKILL, 0)

    def end_leftover(self, timeout: float = 15) -> None:
        """End the process of the pid file if it is ours: SIGTERM, SIGKILL after `timeout`."""
        pid = self._pid_from_file()
        if pid is None or not self._is_ours(pid):
            return
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_running(pid):
            signal_group(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid
        if pid is not None:
            signal_group(pid, sig)
            if not self._wait_exit(pid, timeout):
                signal_group(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 15):
                    raise self._error(f"{self.label} (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)  # also reaps our child, so no zombie is left
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.alive(pid):  # not our child: its parent (or init) reaps it
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


class LocalServer:
    """A local component run as one `DetachedProcess` (`self._process`, set by the subclass).

    Subclasses define `start()`; `stop()` waits up to `stop_timeout` seconds for SIGTERM to
    work before SIGKILL; `with server:` starts it and stops it.
    """

    _process: DetachedProcess
    stop_timeout: float = 15

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> None:
        """Shut down cleanly (SIGTERM); SIGKILL if that takes longer than `timeout`."""
        self._process.stop(self.stop_timeout if timeout is None else timeout)

    def kill(self) -> None:
        """Crash it (SIGKILL), as an outage test wants; its files stay."""
        self._process.kill()

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines)

    def _launch(
        self,
        cmd: Sequence[str],
        wait_ready: Callable[[int], None],
        *,
        die_with_parent: bool = False,
    ) -> None:
        """Launch `cmd` and wait until `wait_ready(pid)` returns; killed if it raises."""
        pid = self._process.launch(cmd, die_with_parent=die_with_parent)
        try:
            wait_ready(pid)
        except BaseException:
            self.kill()
            raise

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


def process_running(pid: int) -> bool:
    """Alive, not a zombie waiting for its new parent (init) to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_group(pid: int, sig: signal.Signals) -> None:
    """The process leads its own process group (start_new_session); fall back to the pid."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
