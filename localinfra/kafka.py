"""A single-node Kafka broker (KRaft: broker and controller in one JVM) run from Maven jars.

Our machines have no Docker, but they have Java and Maven, and Maven Central is reachable:
`pom.xml` pins the jars, `ensure_jars()` copies them once into `.local/kafka/libs`, and every
broker is a plain `java ... kafka.Kafka server.properties` process. Kafka 3.9 rather than 4.x
because it still accepts every old protocol version, which suits aiokafka best.

Each named broker keeps its files in `.local/kafka/<name>/` (config, data, log, pid), so a
dev broker and test brokers can run side by side on different ports. A broker is a cluster of
one by default; `localinfra.kafka_cluster` runs three of them as one cluster.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

from localinfra.process import HOST, DetachedProcess, LocalServer, port_open

JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
MAVEN_TIMEOUT_S = 900

# Kafka's Maven artifacts ship no log4j config. Everything goes to stdout (the log file);
# the loggers below print pages of config dumps or per-request chatter at INFO.
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


class KafkaError(RuntimeError):
    """The local broker could not be prepared, started or stopped."""


class LocalKafka(LocalServer):
    """One named local broker; `start()`/`stop()` may alternate any number of times.

    `fresh=True` wipes the broker's data on the first `start()` only, so that a test suite can
    stop and restart the broker on the same data (outage tests). `reuse=True` adopts a broker
    of the same name that an earlier process left running (the dev `up` command) instead of
    restarting it. `pid` is the broker JVM's, whether this object or an earlier process
    started it.

    Alone it is a cluster of one (node 1, its own controller). As node `node_id` of a larger
    cluster it is given the controller `quorum` (`id@host:port,...`), the `cluster_id` every
    node's storage is formatted with, and the cluster's `replicas`: the replication factor
    of the internal topics and of topics created without one. The broker's default
    min.insync.replicas stays Kafka's (1): the gateway sets it on the topics it creates
    (TOPIC_MIN_INSYNC_REPLICAS), and a test proves that it does.
    """

    stop_timeout = 30

    def __init__(
        self,
        root: Path,
        *,
        name: str = "dev",
        port: int = 9092,
        controller_port: int = 9093,
        fresh: bool = False,
        reuse: bool = False,
        node_id: int = 1,
        quorum: str | None = None,
        cluster_id: str | None = None,
        replicas: int = 1,
    ) -> None:
        self.root = Path(root).resolve()
        self.name = name
        self.port = port
        self.controller_port = controller_port
        self.node_id = node_id
        self.quorum = quorum or f"{node_id}@{HOST}:{controller_port}"
        self.cluster_id = cluster_id
        self.replicas = replicas
        self.fresh = fresh
        self.reuse = reuse
        self.cache_dir = self.root / ".local" / "kafka"
        self.libs_dir = self.cache_dir / "libs"
        self.dir = self.cache_dir / name
        self.data_dir = self.dir / "data"
        self.properties_file = self.dir / "server.properties"
        self.log4j_file = self.dir / "log4j.properties"
        self._process = DetachedProcess(
            self.dir,
            "kafka",
            label=f"Kafka broker {name!r}",
            error=KafkaError,
            is_ours=self._is_our_broker,
            adopt=True,
        )
        self.log_file = self._process.log_file
        self.pid_file = self._process.pid_file

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def ensure_jars(self) -> None:
        """Copy Kafka's runtime classpath from Maven once; afterwards this is one hash check.

        The stamp holds the hash of pom.xml, so changing a pinned version refreshes the jars.
        Maven fills a scratch folder that replaces libs/ only when complete (an interrupted
        download never leaves half a classpath), under a lock for parallel test workers.
        """
        pom = self.root / "pom.xml"
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        stamp = self.cache_dir / "libs.stamp"
        if self._jars_match(stamp, digest):
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / "libs.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._jars_match(stamp, digest):
                return
            mvn = shutil.which("mvn")
            if mvn is None:
                raise KafkaError("Maven (mvn) is not on PATH; install it: apt-get install maven")
            scratch = self.cache_dir / "libs.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom),
                   "dependency:copy-dependencies", f"-Dlibs.dir={scratch}"]  # fmt: skip
            result = subprocess.run(
                cmd, cwd=self.root, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S
            )
            if result.returncode != 0 or not any(scratch.glob("kafka_2.13-*.jar")):
                output = (result.stdout + result.stderr)[-4000:]
                raise KafkaError(f"copying Kafka's jars with Maven failed:\n{output}")
            shutil.rmtree(self.libs_dir, ignore_errors=True)
            scratch.rename(self.libs_dir)
            stamp.write_text(digest)

    def start(self, timeout: float = 90) -> None:
        """Start the broker (formatting its storage the first time) and wait until it serves.

        Ready means a Metadata request answered with this broker in it: the broker has joined
        the controller quorum and is unfenced, so topics can be created right away. A node of
        a cluster is ready only once a quorum of the controllers runs: start them together.
        """
        deadline = time.monotonic() + timeout
        pid = self.pid
        if pid is not None:
            if self.reuse and not self.fresh and self._config_unchanged():
                self._wait_ready(pid, deadline)
                return
            self.stop()
        self.ensure_jars()
        if self.fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.fresh = False  # later restarts keep the data
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format()
        for port in (self.port, self.controller_port):
            if port_open(port):
                raise KafkaError(f"port {port} is already in use by another process")
        self._launch(
            [*self._java_cmd(), "kafka.Kafka", str(self.properties_file)],
            lambda pid: self._wait_ready(pid, deadline),
        )

    def __repr__(self) -> str:
        return f"LocalKafka(name={self.name!r}, bootstrap_servers={self.bootstrap_servers!r})"

    # -- internals ---------------------------------------------------------------------------

    def _jars_match(self, stamp: Path, digest: str) -> bool:
        try:
            return stamp.read_text().strip() == digest and self.libs_dir.is_dir()
        except OSError:
            return False

    def _java_cmd(self) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = Path(java_home, "bin", "java") if java_home else None
        if java is None or not java.exists():
            found = shutil.which("java")
            if found is None:
                raise KafkaError("Java is not installed; Kafka 3.9 needs Java 11 or later")
            java = Path(found)
        return [
            str(java),
            *JVM_OPTS,
            f"-Dlog4j.configuration=file:{self.log4j_file}",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    def _config_unchanged(self) -> bool:
        """A running broker is only reused if it listens where this object expects it."""
        try:
            return self.properties_file.read_text() == self._server_properties()
        except OSError:
            return False

    def _write_config(self) -> None:
        self.properties_file.write_text(self._server_properties())
        self.log4j_file.write_text(LOG4J_PROPERTIES)

    def _server_properties(self) -> str:
        """Written on every start, so changed ports apply to existing data too.

        The internal topics' replication follows `replicas` (Kafka's default of 3 breaks a
        single node); the 3 s initial rebalance delay only slows tests; 50 offsets
        partitions only slow the first consumer group. After a SIGKILL the controller refuses
        the broker's new registration until the old one's session expires (default 9 s), and
        a dead leader's partitions move only then, hence the shorter session timeout.
        """
        min_isr = min(2, self.replicas)
        return f"""\
process.roles=broker,controller
node.id={self.node_id}
controller.quorum.voters={self.quorum}
listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{self.port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.data_dir}
num.partitions=3
auto.create.topics.enable=false
default.replication.factor={self.replicas}
offsets.topic.replication.factor={self.replicas}
offsets.topic.num.partitions=3
transaction.state.log.replication.factor={self.replicas}
transaction.state.log.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
"""

    def _format(self) -> None:
        cmd = [*self._java_cmd(), "kafka.tools.StorageTool", "format",
               "-t", self.cluster_id or new_cluster_id(),
               "-c", str(self.properties_file)]  # fmt: skip
        result = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise KafkaError(f"formatting Kafka storage in {self.data_dir} failed:\n{output}")

    def _wait_ready(self, pid: int, deadline: float) -> None:
        while True:
            if not self._process.alive(pid):
                code = self._process.returncode
                raise KafkaError(
                    f"Kafka broker {self.name!r} exited during startup (code {code}); "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            if self.node_id in live_brokers(HOST, self.port):
                return
            if time.monotonic() > deadline:
                raise KafkaError(
                    f"Kafka broker {self.name!r} not ready on {self.bootstrap_servers} in time; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _is_our_broker(self, pid: int) -> bool:
        """Pid files go stale and pids get reused: only signal a JVM running our config."""
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"kafka.Kafka" in args and os.fsencode(self.properties_file) in args


def new_cluster_id() -> str:
    """What `StorageTool random-uuid` prints, without starting a JVM for it."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # would be parsed as a command-line flag
            return cluster_id


def live_brokers(host: str, port: int, timeout: float = 2.0) -> set[int]:
    """Node ids of the live brokers in a Metadata v1 answer; empty when it cannot answer yet.

    Hand-built so that readiness needs no Kafka client: size-prefixed request header v1
    (api_key 3 = Metadata, version 1, correlation id, client id) and an empty topic array.
    The answer starts with the correlation id and the broker array: node id (int32), host
    (int16-sized string), port (int32), rack (nullable int16-sized string). Brokers that are
    fenced are not listed.
    """
    client_id = b"localinfra"
    request = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            response = _recv_exact(sock, size)
        correlation_id, count = struct.unpack_from(">ii", response)
        if correlation_id != 7:
            return set()
        nodes, at = set(), 8
        for _ in range(count):
            (node_id,) = struct.unpack_from(">i", response, at)
            (host_len,) = struct.unpack_from(">h", response, at + 4)
            at += 4 + 2 + host_len + 4
            (rack_len,) = struct.unpack_from(">h", response, at)
            at += 2 + max(rack_len, 0)
            nodes.add(node_id)
        return nodes
    except (OSError, struct.error):
        return set()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data
