"""A real single-node Apache Kafka broker (KRaft combined mode) on this machine, without Docker.

The jars come from Maven Central through ``infra/kafka/pom.xml`` into a cache outside the
repository (``~/.cache/streamledger/kafka-<version>/libs``). The broker runs detached from the
caller, listens on 127.0.0.1 only, and keeps everything else under ``{home}``::

    {home}/kafka/server.properties   rendered from the settings at every start
    {home}/kafka/log4j2.xml          log configuration (rolling file, bounded size)
    {home}/kafka/cluster.id          the cluster id the storage was formatted with
    {home}/kafka/broker.pid          pid of the running broker
    {home}/kafka/data/               log.dirs (topics and the KRaft metadata log)
    {home}/logs/kafka.log            the broker log
    {home}/logs/kafka.out            the JVM's own stdout/stderr (crashes before log4j starts)

With ``brokers`` > 1 (``STREAMLEDGER_BROKERS`` / ``--brokers``) the same code runs a cluster of
combined broker+controller nodes with one KRaft quorum of all of them (decision 0036). Node ``i``
(1-based) listens on ``kafka_port + 2(i-1)`` for clients and ``kafka_controller_port + 2(i-1)``
for the quorum, and keeps its files under ``{home}/kafka-cluster/node-<i>/`` (logs
``{home}/logs/kafka-<i>.log``); the cluster id all nodes are formatted with is
``{home}/kafka-cluster/cluster.id``.

Readiness is an AdminClient metadata request that succeeds, not a TCP probe.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from infra.service import ServiceReport
from kafka_adapter.admin import admin_client, broker_count, cluster_metadata
from kafka_adapter.security import (
    ADMIN_PRINCIPAL,
    CONTROLLER_PRINCIPAL,
    SCRAM_ITERATIONS,
    SCRAM_MECHANISM,
    credentials_directory,
    ensure_password,
    is_scram,
)
from streamledger.errors import InfraError, PortInUseError, SettingError
from streamledger.settings import (
    KAFKA_CLUSTER_DIRECTORY_NAME,
    KAFKA_DIRECTORY_NAME,
    KAFKA_NODE_PORT_STRIDE,
    KAFKA_SECURITY_MARKER_NAME,
    Settings,
    replace,
)

MAVEN_TIMEOUT_S = 900.0  # a cold ~/.m2 downloads ~45 MB of jars plus Maven's own plugins
FORMAT_TIMEOUT_S = 120.0
START_TIMEOUT_S = 90.0  # JVM start + KRaft election on two slow cores; typically 5-10 s
READINESS_REQUEST_TIMEOUT_S = 2.0  # one metadata request while waiting for the broker
STATUS_REQUEST_TIMEOUT_S = 3.0
READINESS_POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 30.0  # controlled shutdown of one node flushes logs; then SIGKILL
KILL_TIMEOUT_S = 10.0
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORT_RELEASE_TIMEOUT_S = 15.0  # a cluster node restarted right after a kill -9
LOG_TAIL_LINES = 5
LOG_FILE_SIZE_MAX = "50 MB"
LOG_FILES_KEPT_MAX = 3
TOOL_HEAP_MB = 256  # StorageTool is a short-lived JVM
# The log cleaner's dedupe buffer defaults to 128 MiB of heap; a local broker has 512 MiB in all.
CLEANER_DEDUPE_BUFFER_BYTES = 32 * 1024 * 1024
INTERNAL_TOPIC_PARTITIONS = 10  # __consumer_offsets / __transaction_state: 50 by default
# Node i (1-based) uses the base ports + PORT_STRIDE * (i - 1): 19092, 19094, 19096 for clients
# and 19093, 19095, 19097 for the quorum by default, the layout of docker-compose.cluster.yml.
PORT_STRIDE = KAFKA_NODE_PORT_STRIDE
INTERNAL_TOPIC_REPLICATION_MAX = 3  # __consumer_offsets / __transaction_state copies
INTERNAL_TOPIC_MIN_INSYNC_MAX = 2
# How fast a kill -9'd node is noticed: the controller fences a broker whose heartbeats stop for
# BROKER_SESSION_TIMEOUT_MS (Kafka's default 9000) and moves its leaderships and ISR places; a
# lower value fails over sooner but fences a live node starved of CPU on a loaded 2-core machine.
BROKER_SESSION_TIMEOUT_MS = 6000
BROKER_HEARTBEAT_INTERVAL_MS = 1000
CLUSTER_DIRECTORY_NAME = KAFKA_CLUSTER_DIRECTORY_NAME
QUORUM_STATE_FILE = Path("__cluster_metadata-0") / "quorum-state"

KAFKA_PORT_HINT = "setting kafka_port: STREAMLEDGER_KAFKA_PORT / --kafka-port"
CONTROLLER_PORT_HINT = (
    "setting kafka_controller_port: STREAMLEDGER_KAFKA_CONTROLLER_PORT / --kafka-controller-port"
)
POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
MAIN_CLASS = "kafka.Kafka"
MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class KafkaPaths:
    """Where one local broker keeps its files."""

    directory: Path
    data: Path
    properties: Path
    log4j_config: Path
    cluster_id: Path
    pid: Path
    log: Path
    console_log: Path
    format_log: Path

    @classmethod
    def of(cls, settings: Settings, node_id: int = 1) -> KafkaPaths:
        """Node ``node_id``'s files: ``{home}/kafka`` for a single broker, else
        ``{home}/kafka-cluster/node-<id>`` with the cluster id shared by every node."""
        logs = settings.home / "logs"
        if settings.brokers == 1:
            directory = settings.home / KAFKA_DIRECTORY_NAME
            cluster_id, name = directory / "cluster.id", "kafka"
        else:
            cluster = settings.home / CLUSTER_DIRECTORY_NAME
            directory = cluster / f"node-{node_id}"
            cluster_id, name = cluster / "cluster.id", f"kafka-{node_id}"
        return cls(
            directory=directory,
            data=directory / "data",
            properties=directory / "server.properties",
            log4j_config=directory / "log4j2.xml",
            cluster_id=cluster_id,
            pid=directory / "broker.pid",
            log=logs / f"{name}.log",
            console_log=logs / f"{name}.out",
            format_log=logs / f"{name}-format.log",
        )


@dataclass(frozen=True, slots=True)
class KafkaNode:
    """One node of the local cluster (broker and controller in one JVM)."""

    node_id: int  # KRaft node.id, 1-based
    client_port: int
    controller_port: int
    paths: KafkaPaths

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def controller_address(self) -> str:
        return f"127.0.0.1:{self.controller_port}"


def node_of(settings: Settings, node_id: int) -> KafkaNode:
    if not 1 <= node_id <= settings.brokers:
        raise InfraError(f"node {node_id} is not one of nodes 1..{settings.brokers}")
    offset = PORT_STRIDE * (node_id - 1)
    return KafkaNode(
        node_id=node_id,
        client_port=settings.kafka_port + offset,
        controller_port=settings.kafka_controller_port + offset,
        paths=KafkaPaths.of(settings, node_id),
    )


def cluster_nodes(settings: Settings) -> tuple[KafkaNode, ...]:
    """Every node of the local cluster; ``SettingError`` when two of their ports coincide."""
    nodes = tuple(node_of(settings, node_id) for node_id in range(1, settings.brokers + 1))
    ports = [port for node in nodes for port in (node.client_port, node.controller_port)]
    if len(set(ports)) != len(ports) or max(ports) > MAX_PORT:
        raise SettingError(
            f"setting kafka_controller_port: {settings.brokers} nodes use ports"
            f" {settings.kafka_port}+{PORT_STRIDE}i and {settings.kafka_controller_port}+"
            f"{PORT_STRIDE}i, which must all differ and stay <= {MAX_PORT}"
            " (e.g. the controller port = the Kafka port + 1)"
        )
    return nodes


def ephemeral_port_range() -> tuple[int, int] | None:
    """The kernel's range for the local ports of outgoing connections, or None if unknown."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def check_outside_ephemeral_range(nodes: tuple[KafkaNode, ...]) -> None:
    """Refuse cluster ports inside the kernel's ephemeral range.

    A client reconnecting on loopback to a node that is down is given a local port from that
    range; when it is the node's own port the connection meets itself (a TCP simultaneous open)
    and holds the port, so the node cannot start again. Seen in ``make chaos-ha`` with 36094."""
    span = ephemeral_port_range()
    if span is None or len(nodes) == 1:
        return
    inside = [
        port
        for node in nodes
        for port in (node.client_port, node.controller_port)
        if span[0] <= port <= span[1]
    ]
    if inside:
        raise SettingError(
            f"setting kafka_port: ports {inside} of the {len(nodes)}-node cluster are inside the"
            f" kernel's ephemeral range {span[0]}-{span[1]} ({EPHEMERAL_RANGE_FILE}): a client"
            " reconnecting to a stopped node can take its port; choose ports below"
            f" {span[0]} (decision 0036)"
        )


def bootstrap_addresses(settings: Settings) -> str:
    """Every local node's client address, so a client starting while one node is down connects."""
    return ",".join(node.address for node in cluster_nodes(settings))


# --- installation ---------------------------------------------------------------------------


def cache_directory(settings: Settings) -> Path:
    """``~/.cache/streamledger/kafka-<version>``: outside the repo, shared by every checkout."""
    return Path.home() / ".cache" / "streamledger" / f"kafka-{settings.kafka_version}"


def libs_directory(settings: Settings) -> Path:
    return cache_directory(settings) / "libs"


def install_marker(settings: Settings) -> Path:
    return cache_directory(settings) / "installed"


def install_fingerprint(settings: Settings) -> str:
    """Changes when the version or the pom changes, so an edited pom re-resolves the jars."""
    digest = hashlib.sha256(POM_PATH.read_bytes())
    digest.update(settings.kafka_version.encode())
    return digest.hexdigest()


def is_installed(settings: Settings) -> bool:
    marker = install_marker(settings)
    return marker.is_file() and marker.read_text().strip() == install_fingerprint(settings)


def ensure_installed(settings: Settings) -> None:
    """Resolve the broker jars with Maven unless the cache already holds a complete set."""
    if is_installed(settings):
        return
    cache_directory(settings).mkdir(parents=True, exist_ok=True)
    # Two processes installing at once (a test run and a shell) must not delete each other's jars;
    # the holder is bounded by MAVEN_TIMEOUT_S.
    with (cache_directory(settings) / "install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_installed(settings):
            resolve_jars(settings)


def resolve_jars(settings: Settings) -> None:
    maven = require_program("mvn", "Maven")
    require_program("java", "a JDK 17+")
    libs = libs_directory(settings)
    # A half-copied directory from an interrupted run may hold jars of another version.
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    maven_log = cache_directory(settings) / "maven.log"
    command = [
        maven,
        "-B",
        "-q",
        "-f",
        str(POM_PATH),
        f"-Dkafka.version={settings.kafka_version}",
        f"-Dstreamledger.libs.dir={libs}",
        "dependency:copy-dependencies",
    ]
    run_logged(command, maven_log, MAVEN_TIMEOUT_S, "resolving the Kafka jars with Maven")
    if not any(libs.glob(f"kafka_2.13-{settings.kafka_version}.jar")):
        raise InfraError(f"Maven finished but {libs} has no Kafka {settings.kafka_version} jar")
    # Written last: its presence means every jar above is in place.
    install_marker(settings).write_text(install_fingerprint(settings) + "\n")


def require_program(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(f"{name} not found on PATH; install {what} (scripts/setup.sh does)")
    return path


def run_logged(command: list[str], log_path: Path, timeout_s: float, doing: str) -> None:
    """Run a short-lived tool with its output in ``log_path``; raise naming the log on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfraError(f"{doing} took longer than {timeout_s:g} s; see {log_path}") from None
    if completed.returncode != 0:
        raise InfraError(
            f"{doing} failed (exit {completed.returncode}); see {log_path}: {log_tail(log_path)}"
        )


# --- rendering --------------------------------------------------------------------------------


def server_properties(settings: Settings, paths: KafkaPaths, node_id: int = 1) -> str:
    nodes = cluster_nodes(settings)
    node = nodes[node_id - 1]
    voters = ",".join(f"{other.node_id}@{other.controller_address}" for other in nodes)
    internal_replicas = min(settings.brokers, INTERNAL_TOPIC_REPLICATION_MAX)
    internal_min_insync = str(min(internal_replicas, INTERNAL_TOPIC_MIN_INSYNC_MAX))
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{node.address},CONTROLLER://{node.controller_address}",
        "advertised.listeners": f"PLAINTEXT://{node.address}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(paths.data),
        # Topics are code (infra/topics.py): a typo in a topic name must fail, not create one.
        "auto.create.topics.enable": "false",
        "num.partitions": str(settings.partitions),
        "default.replication.factor": str(settings.replication_factor),
        "min.insync.replicas": str(settings.min_insync_replicas),
        # Never elect a replica that may miss acknowledged writes (Kafka's default, stated).
        "unclean.leader.election.enable": "false",
        # Internal topics: consumer groups and transactions need these on every cluster size.
        "offsets.topic.replication.factor": str(internal_replicas),
        "offsets.topic.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "transaction.state.log.replication.factor": str(internal_replicas),
        "transaction.state.log.min.isr": internal_min_insync,
        "transaction.state.log.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "share.coordinator.state.topic.replication.factor": str(internal_replicas),
        "share.coordinator.state.topic.min.isr": internal_min_insync,
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": str(CLEANER_DEDUPE_BUFFER_BYTES),
        # Two cores: Kafka's defaults (3 network, 8 I/O threads) only add context switches.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "broker.session.timeout.ms": str(BROKER_SESSION_TIMEOUT_MS),
        "broker.heartbeat.interval.ms": str(BROKER_HEARTBEAT_INTERVAL_MS),
    }
    if is_scram(settings):
        lines.update(sasl_properties(settings, node))
    body = "".join(f"{key}={value}\n" for key, value in lines.items())
    return (
        "# Rendered by streamledger (infra/kafka_broker.py) at every start; edits are lost.\n"
        + body
    )


def sasl_properties(settings: Settings, node: KafkaNode) -> dict[str, str]:
    """SASL/SCRAM-SHA-512 on the client listener, the StandardAuthorizer (decision 0062).

    The client listener (also the inter-broker one) takes SCRAM-SHA-512; the brokers talk to
    each other as ``admin``, whose SCRAM credentials the storage is formatted with. KRaft cannot
    use SCRAM on the controller listener (the credentials live in the metadata log the quorum
    is still electing a leader for), so the quorum authenticates with SASL/PLAIN as
    ``controller``, whose password is in this file only. Both are super users; every other
    principal has only the ACLs ``infra.principals`` grants, and none is everyone's default."""
    admin_password = ensure_password(settings.home, ADMIN_PRINCIPAL)
    controller_password = ensure_password(settings.home, CONTROLLER_PRINCIPAL)
    scram_login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
        f' username="{ADMIN_PRINCIPAL}" password="{admin_password}";'
    )
    plain_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
        f' username="{CONTROLLER_PRINCIPAL}" password="{controller_password}"'
        f' user_{CONTROLLER_PRINCIPAL}="{controller_password}";'
    )
    return {
        "listeners": f"SASL_PLAINTEXT://{node.address},CONTROLLER://{node.controller_address}",
        "advertised.listeners": f"SASL_PLAINTEXT://{node.address}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram_login,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain_login,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_PRINCIPAL};User:{CONTROLLER_PRINCIPAL}",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_format_arguments(settings: Settings) -> list[str]:
    """``--add-scram`` for the admin principal: the brokers need it before any can answer."""
    if not is_scram(settings):
        return []
    password = ensure_password(settings.home, ADMIN_PRINCIPAL)
    credential = f"{SCRAM_MECHANISM}=[name={ADMIN_PRINCIPAL},iterations={SCRAM_ITERATIONS},"
    return ["--add-scram", f"{credential}password={password}]"]


def security_marker(paths: KafkaPaths) -> Path:
    """Written at format time: the security the storage was formatted for (read back by
    ``streamledger.settings.formatted_kafka_security`` when no setting names the mode)."""
    return paths.directory / KAFKA_SECURITY_MARKER_NAME


def check_formatted_security(settings: Settings, paths: KafkaPaths) -> None:
    """A storage formatted for one security mode is not started in the other: the admin's
    SCRAM credentials exist only when it was formatted with them."""
    marker = security_marker(paths)
    formatted = marker.read_text().strip() if marker.is_file() else "plaintext"
    if formatted != settings.kafka_security:
        raise SettingError(
            f"setting kafka_security: the Kafka storage in {paths.directory} was formatted for"
            f" {formatted}, not {settings.kafka_security}; use --kafka-security {formatted}, or"
            " `infra reset` it first [STREAMLEDGER_KAFKA_SECURITY / --kafka-security]"
        )


def log4j_config(paths: KafkaPaths) -> str:
    log = str(paths.log)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Rendered by streamledger (infra/kafka_broker.py). -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName={quoteattr(log)} filePattern={quoteattr(log + ".%i")}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="{LOG_FILE_SIZE_MAX}"/></Policies>
      <DefaultRolloverStrategy max="{LOG_FILES_KEPT_MAX}"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a command-line flag
            return text


def cluster_id(paths: KafkaPaths) -> str:
    """The id this home's storage is formatted with, created once and kept."""
    if paths.cluster_id.is_file():
        return paths.cluster_id.read_text().strip()
    text = new_cluster_id()
    paths.cluster_id.write_text(text + "\n")
    return text


def java_command(settings: Settings, paths: KafkaPaths, heap_mb: int, *arguments: str) -> list[str]:
    return [
        require_program("java", "a JDK 17+"),
        f"-Xmx{heap_mb}m",
        f"-Xms{heap_mb}m",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.log4j_config}",
        f"-Dkafka.logs.dir={paths.log.parent}",
        "-cp",
        f"{libs_directory(settings)}/*",  # expanded by java itself, never by a shell
        *arguments,
    ]


def prepare(settings: Settings, paths: KafkaPaths, node_id: int = 1) -> None:
    """Render the configuration and format the storage the first time."""
    paths.directory.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    if (paths.data / "meta.properties").is_file():
        check_formatted_security(settings, paths)
    # The file holds the SASL passwords under scram: readable by this user only.
    descriptor = os.open(paths.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as properties:
        properties.write(server_properties(settings, paths, node_id))
    paths.log4j_config.write_text(log4j_config(paths))
    if (paths.data / "meta.properties").is_file():
        return
    command = java_command(
        settings,
        paths,
        TOOL_HEAP_MB,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id(paths),
        "--config",
        str(paths.properties),
        *scram_format_arguments(settings),
    )
    run_logged(command, paths.format_log, FORMAT_TIMEOUT_S, "formatting the Kafka storage")
    security_marker(paths).write_text(settings.kafka_security + "\n")


# --- processes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerProcess:
    """A broker process, identified by pid and start time so a recycled pid is never mistaken."""

    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: clock ticks after boot when it started


def proc_stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def start_ticks_of(pid: int) -> int | None:
    fields = proc_stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def is_alive(process: BrokerProcess) -> bool:
    """True while any thread of the process runs.

    A JVM's main thread exits early in shutdown: /proc/<pid>/stat then says Z (and cmdline is
    empty) while other threads still run shutdown hooks and hold the ports. Only when every
    thread is a zombie is the broker gone.
    """
    if start_ticks_of(process.pid) != process.start_ticks:
        return False
    try:
        tasks = list(Path(f"/proc/{process.pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            return True
    return False


def read_process(paths: KafkaPaths) -> BrokerProcess | None:
    """The process named by the pid file ("<pid> <start ticks>"), alive or not."""
    return read_process_file(paths.pid, paths.properties)


def read_process_file(pid_file: Path, properties: Path) -> BrokerProcess | None:
    try:
        parts = [int(part) for part in pid_file.read_text().split()]
    except (FileNotFoundError, ValueError):
        return None
    if len(parts) == 2:
        return BrokerProcess(parts[0], parts[1])
    if len(parts) == 1 and is_broker_command_line(parts[0], properties):
        # A pid file of an earlier StreamLedger: identify the process by its command line.
        ticks = start_ticks_of(parts[0])
        return BrokerProcess(parts[0], ticks) if ticks is not None else None
    return None


def is_broker_command_line(pid: int, properties: Path) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return MAIN_CLASS.encode() in arguments and str(properties).encode() in arguments


def running_process(paths: KafkaPaths) -> BrokerProcess | None:
    process = read_process(paths)
    return process if process is not None and is_alive(process) else None


def is_running(settings: Settings) -> bool:
    """True when every node of the configured cluster runs."""
    return all(running_process(node.paths) is not None for node in cluster_nodes(settings))


def check_port_free(port: int, hint: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Kafka binds with SO_REUSEADDR too, so a port in TIME_WAIT after our own stop is fine;
        # a port somebody listens on still fails the bind.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"port {port} on 127.0.0.1 is already in use by another program; choose a free"
                f" port [{hint}]"
            ) from None


def check_ports_free(settings: Settings, *, wait_s: float = 0.0) -> None:
    """``PortInUseError`` naming the port and its setting when another program holds one of the
    ports of a node that is not running, still after ``wait_s`` (a node killed a moment ago may
    hold its sockets while the kernel tears its memory down)."""
    deadline = time.monotonic() + wait_s
    for node in cluster_nodes(settings):
        if running_process(node.paths) is not None:
            continue
        for port, hint in (
            (node.client_port, KAFKA_PORT_HINT),
            (node.controller_port, CONTROLLER_PORT_HINT),
        ):
            while True:
                try:
                    check_port_free(port, hint)
                    break
                except PortInUseError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(READINESS_POLL_INTERVAL_S)


def spawn_detached(command: list[str], paths: KafkaPaths) -> BrokerProcess:
    """Start the broker so it outlives the caller and never holds the caller's stdout.

    A throwaway shell starts it in the background and exits at once, so the broker is re-parented
    to init: nothing in this process has to reap it, and CI waiting on our stdout is not kept
    waiting by a broker that inherited it.
    """
    paths.pid.unlink(missing_ok=True)
    launcher = ["sh", "-c", '"$@" & echo $! > "$0"', str(paths.pid), *command]
    with paths.console_log.open("ab") as console:
        subprocess.run(
            launcher,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            check=True,
            timeout=KILL_TIMEOUT_S,
        )
    try:
        pid = int(paths.pid.read_text())
    except (FileNotFoundError, ValueError):
        raise InfraError(f"the Kafka broker did not start; see {paths.console_log}") from None
    ticks = start_ticks_of(pid)
    if ticks is None:
        raise start_failure(paths, "the broker exited at once")
    process = BrokerProcess(pid, ticks)
    paths.pid.write_text(f"{process.pid} {process.start_ticks}\n")
    return process


def node_settings(settings: Settings, node: KafkaNode) -> Settings:
    """``settings`` whose bootstrap is this one node: admin requests that ask only it."""
    return replace(settings, bootstrap_servers=node.address)


def wait_until_ready(settings: Settings, node: KafkaNode, process: BrokerProcess) -> None:
    """Until the node answers a metadata request that lists every broker of the cluster."""
    deadline = time.monotonic() + START_TIMEOUT_S
    asking = node_settings(settings, node)
    while time.monotonic() < deadline:
        if not is_alive(process):
            raise start_failure(node.paths, "the broker exited during start-up")
        try:
            brokers = broker_count(asking, timeout_s=READINESS_REQUEST_TIMEOUT_S)
        except InfraError:
            brokers = 0
        if brokers >= settings.brokers:
            return
        time.sleep(READINESS_POLL_INTERVAL_S)
    raise start_failure(node.paths, f"the broker did not answer within {START_TIMEOUT_S:g} s")


def start_failure(paths: KafkaPaths, what: str) -> InfraError:
    log = paths.log if paths.log.is_file() else paths.console_log
    return InfraError(f"Kafka did not start: {what}; see {log}: {log_tail(log)}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The log's last ERROR/FATAL lines (else its last lines), joined with ' | ' to stay one line.

    Kafka dumps hundreds of config lines at start; the reason it stopped is in the error lines.
    """
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    all_lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in all_lines if " ERROR " in line or " FATAL " in line]
    tail = (errors or all_lines)[-lines:]
    return " | ".join(tail) if tail else "(log is empty)"


# --- the service interface -------------------------------------------------------------------


def report(node: KafkaNode, name: str, running: bool, detail: str) -> ServiceReport:
    return ServiceReport(
        name=name,
        running=running,
        address=node.address,
        log_path=node.paths.log,
        data_path=node.paths.data,
        detail=detail,
    )


def service_name(settings: Settings, node: KafkaNode) -> str:
    return "kafka" if settings.brokers == 1 else f"kafka-{node.node_id}"


def start(settings: Settings) -> ServiceReport:
    """Start every node that is not running; return once each answers with the whole cluster.

    The nodes start side by side: a KRaft quorum elects a leader only once a majority of its
    voters runs, so no node is ready before the others are started."""
    nodes = cluster_nodes(settings)
    running = {node.node_id: running_process(node.paths) for node in nodes}
    missing = [node for node in nodes if running[node.node_id] is None]
    if missing:
        check_outside_ephemeral_range(nodes)
        ensure_installed(settings)
        check_ports_free(settings, wait_s=PORT_RELEASE_TIMEOUT_S if len(nodes) > 1 else 0.0)
    began = time.monotonic()
    started: list[tuple[KafkaNode, BrokerProcess]] = []
    try:
        for node in missing:
            prepare(settings, node.paths, node.node_id)
        for node in missing:
            command = java_command(
                settings, node.paths, settings.kafka_heap_mb, MAIN_CLASS, str(node.paths.properties)
            )
            started.append((node, spawn_detached(command, node.paths)))
        for node in nodes:
            process = running[node.node_id] or dict(started)[node]
            wait_until_ready(settings, node, process)
    except InfraError:
        for node, _ in started:
            stop_node(node)
        raise
    return start_report(settings, nodes, [node for node, _ in started], time.monotonic() - began)


def start_report(
    settings: Settings, nodes: tuple[KafkaNode, ...], started: list[KafkaNode], elapsed_s: float
) -> ServiceReport:
    version = f"Kafka {settings.kafka_version}"
    if not started:
        detail = "already running"
    elif len(nodes) == 1:
        process = running_process(nodes[0].paths)
        pid = process.pid if process is not None else "?"
        detail = f"started in {elapsed_s:.1f} s, {version}, pid {pid}"
    else:
        names = ", ".join(str(node.node_id) for node in started)
        detail = f"nodes {names} started in {elapsed_s:.1f} s, {version}, {len(nodes)} brokers"
    summary = report(nodes[0], "kafka", True, detail)
    if len(nodes) == 1:
        return summary
    return dataclasses.replace(summary, address=bootstrap_addresses(settings))


def stop(settings: Settings) -> None:
    """Stop every node of the configured cluster, and any other node this home still runs."""
    for node in cluster_nodes(settings):
        stop_node(node)
    for pid_file in sorted((settings.home / CLUSTER_DIRECTORY_NAME).glob("node-*/broker.pid")):
        stop_process_of(pid_file.parent, pid_file)
    single = settings.home / "kafka" / "broker.pid"
    if single.is_file():
        stop_process_of(single.parent, single)


def stop_process_of(directory: Path, pid_file: Path) -> None:
    """Stop a node found by its pid file (a home that ran another cluster size before)."""
    process = read_process_file(pid_file, directory / "server.properties")
    if process is not None and is_alive(process):
        stop_process(process)
    pid_file.unlink(missing_ok=True)


def stop_node(node: KafkaNode) -> None:
    """SIGTERM (controlled shutdown), wait a bounded time, then SIGKILL."""
    process = running_process(node.paths)
    if process is not None:
        stop_process(process)
    node.paths.pid.unlink(missing_ok=True)


def stop_process(process: BrokerProcess) -> None:
    signal_process(process, signal.SIGTERM)
    if not wait_for_exit(process, STOP_TIMEOUT_S):
        signal_process(process, signal.SIGKILL)
        if not wait_for_exit(process, KILL_TIMEOUT_S):
            raise InfraError(
                f"Kafka broker pid {process.pid} survived SIGKILL for {KILL_TIMEOUT_S:g} s"
            )


def kill_node(settings: Settings, node_id: int) -> BrokerProcess | None:
    """``kill -9`` one node (fault tests); its pid file stays, like after a crash."""
    process = running_process(node_of(settings, node_id).paths)
    if process is None:
        return None
    signal_process(process, signal.SIGKILL)
    if not wait_for_exit(process, KILL_TIMEOUT_S):
        raise InfraError(
            f"Kafka broker pid {process.pid} survived SIGKILL for {KILL_TIMEOUT_S:g} s"
        )
    return process


def signal_process(process: BrokerProcess, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited between the check and the signal
        os.kill(process.pid, signal_number)


def wait_for_exit(process: BrokerProcess, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(process):
            return True
        time.sleep(READINESS_POLL_INTERVAL_S)
    return False


def status(settings: Settings) -> ServiceReport:
    """The first node's state (the whole broker on a single-node stack)."""
    return node_statuses(settings)[0]


def node_statuses(settings: Settings) -> list[ServiceReport]:
    """One report per node: pid, whether it answers admin requests, how many brokers it sees."""
    reports = []
    for node in cluster_nodes(settings):
        name = service_name(settings, node)
        process = running_process(node.paths)
        if process is None:
            reports.append(report(node, name, False, ""))
            continue
        try:
            brokers = broker_count(
                node_settings(settings, node), timeout_s=STATUS_REQUEST_TIMEOUT_S
            )
        except InfraError:
            reports.append(report(node, name, True, f"pid {process.pid}, not answering"))
            continue
        detail = f"pid {process.pid}, {brokers} broker{'s' if brokers != 1 else ''} seen"
        reports.append(report(node, name, True, f"{detail}, Kafka {settings.kafka_version}"))
    return reports


# --- cluster health ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """What ``infra status`` says about a cluster of more than one node."""

    controller_leader: int | None  # node id of the active controller, None when unknown
    leader_epoch: int
    partitions: int
    under_replicated: int  # fewer in-sync replicas than replicas
    offline: int  # no leader at all
    leaders: dict[int, int]  # node id -> partitions it leads

    def line(self) -> str:
        leader = (
            f"node {self.controller_leader} (epoch {self.leader_epoch})"
            if self.controller_leader is not None
            else "unknown"
        )
        led = ", ".join(f"node {node}: {count}" for node, count in sorted(self.leaders.items()))
        return (
            f"kafka cluster: controller leader {leader}; {self.partitions} partitions,"
            f" {self.under_replicated} under-replicated, {self.offline} offline;"
            f" leaders {led or 'none'}"
        )


def quorum_state(node: KafkaNode) -> tuple[int, int] | None:
    """(leader id, epoch) as this node last recorded it in its KRaft quorum-state file."""
    try:
        state = json.loads((node.paths.data / QUORUM_STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
    if not isinstance(leader, int) or not isinstance(epoch, int) or leader < 0:
        return None
    return leader, epoch


def controller_leader(settings: Settings) -> tuple[int, int] | None:
    """The active controller (leader id, epoch): the newest epoch any running node recorded.

    Kafka's DescribeCluster names a random broker as "controller" under KRaft, so the quorum's
    own state file is the cheap, exact source on this machine."""
    states = [
        state
        for node in cluster_nodes(settings)
        if running_process(node.paths) is not None
        for state in [quorum_state(node)]
        if state is not None
    ]
    return max(states, key=lambda state: state[1]) if states else None


def cluster_health(
    settings: Settings, timeout_s: float = STATUS_REQUEST_TIMEOUT_S
) -> ClusterHealth:
    """Controller leader, partition leaders and replication state of every topic."""
    metadata = cluster_metadata(admin_client(settings, timeout_s=timeout_s), settings, timeout_s)
    partitions = under_replicated = offline = 0
    leaders: dict[int, int] = {}
    for topic in metadata.topics.values():
        for partition in topic.partitions.values():
            partitions += 1
            if partition.leader < 0:
                offline += 1
            else:
                leaders[partition.leader] = leaders.get(partition.leader, 0) + 1
            if len(partition.isrs) < len(partition.replicas):
                under_replicated += 1
    leader = controller_leader(settings)
    return ClusterHealth(
        controller_leader=leader[0] if leader is not None else None,
        leader_epoch=leader[1] if leader is not None else -1,
        partitions=partitions,
        under_replicated=under_replicated,
        offline=offline,
        leaders=leaders,
    )


def reset(settings: Settings) -> None:
    """Stop the nodes and delete their data, configuration and logs (the jar cache stays)."""
    stop(settings)
    shutil.rmtree(settings.home / "kafka", ignore_errors=True)
    shutil.rmtree(settings.home / CLUSTER_DIRECTORY_NAME, ignore_errors=True)
    # The credentials of a reset stack are gone from its metadata; their files go too.
    shutil.rmtree(credentials_directory(settings.home), ignore_errors=True)
    paths = KafkaPaths.of(settings)
    for log in paths.log.parent.glob("kafka*"):
        log.unlink(missing_ok=True)
