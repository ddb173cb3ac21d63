"""What every benchmark stands on: its own Kafka broker, its own database, service processes.

The broker is a `LocalKafka` of the bench's own (free ports, removed afterwards); the database
is created on the machine's shared PostgreSQL cluster and dropped afterwards (the cluster is
never stopped). Services run as OS processes exactly as `akave-gateway <service>` runs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localinfra.kafka import LocalKafka
from localinfra.postgres import create_database, drop_database, ensure_postgres
from shared.migrations import migrate
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / ".local" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load() -> str:
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                todo.extend(int(k) for k in kids)
    return out


def peak_rss_mib(pid: int) -> float:
    """Peak resident set (VmHWM) of `pid`, in MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Infra:
    """A broker and a database for one bench run, and settings pointing at them."""

    settings: Settings
    kafka: LocalKafka
    log_dir: Path

    def settings_for(self, **overrides: Any) -> Settings:
        """Fresh topics and consumer group (so runs do not see each other's events)."""
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "bucket_events_topic": f"bench-{tag}.bucket-events",
            "dead_letter_topic": f"bench-{tag}.bucket-events.dlq",
            "executor_group_id": f"bench-{tag}-executor",
            "api_port": free_port(),
        }
        values.update(overrides)
        return self.settings.model_copy(update=values)


@contextlib.contextmanager
def infra() -> Iterator[Infra]:
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"bench-{os.getpid()}"
    broker = LocalKafka(REPO, name=name, port=free_port(), controller_port=free_port(), fresh=True)
    server = ensure_postgres(None)
    url = create_database(server, f"akave_bench_{os.getpid()}")
    try:
        migrate(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        broker.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_partitions=3,
            log_level="WARNING",  # a benchmark that runs an executor names its chain
        )
        log_dir = OUT / "logs"
        log_dir.mkdir(exist_ok=True)
        yield Infra(settings, broker, log_dir)
    finally:
        broker.stop()
        shutil.rmtree(broker.dir, ignore_errors=True)
        drop_database(url)


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKAVE_", "BENCH_"))}
    for key, value in settings.model_dump(mode="json").items():
        if value is not None and key != "akave_private_key":
            env[key.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Services:
    """Gateway services as OS processes; remembers each one's peak RSS."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def start(self, name: str, command: str | None = None, **env: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "cli", command or name],
            cwd=REPO,
            env=env_for(self.settings, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}")
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:200]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(f"the API never became healthy ({last}); see {self.log_dir}")

    def sample_rss(self) -> None:
        """Record the peak RSS of each service (the sum over an API's worker processes)."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                total = sum(peak_rss_mib(p) for p in tree(proc.pid))
                self.peaks[name] = max(self.peaks.get(name, 0.0), total)

    def cpu(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                out[name] = sum(_safe_cpu(p) for p in tree(proc.pid))
        return out

    def stop_all(self) -> None:
        self.sample_rss()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0
