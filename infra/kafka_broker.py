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

Readiness is an AdminClient metadata request that succeeds, not a TCP probe.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
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
from kafka_adapter.admin import broker_count
from streamledger.errors import InfraError, PortInUseError
from streamledger.settings import Settings

MAVEN_TIMEOUT_S = 900.0  # a cold ~/.m2 downloads ~45 MB of jars plus Maven's own plugins
FORMAT_TIMEOUT_S = 120.0
START_TIMEOUT_S = 90.0  # JVM start + KRaft election on two slow cores; typically 5-10 s
READINESS_REQUEST_TIMEOUT_S = 2.0  # one metadata request while waiting for the broker
STATUS_REQUEST_TIMEOUT_S = 3.0
READINESS_POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 30.0  # controlled shutdown of one node flushes logs; then SIGKILL
KILL_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 5
LOG_FILE_SIZE_MAX = "50 MB"
LOG_FILES_KEPT_MAX = 3
TOOL_HEAP_MB = 256  # StorageTool is a short-lived JVM
# The log cleaner's dedupe buffer defaults to 128 MiB of heap; a local broker has 512 MiB in all.
CLEANER_DEDUPE_BUFFER_BYTES = 32 * 1024 * 1024
INTERNAL_TOPIC_PARTITIONS = 10  # __consumer_offsets / __transaction_state: 50 by default

KAFKA_PORT_HINT = "setting kafka_port: STREAMLEDGER_KAFKA_PORT / --kafka-port"
CONTROLLER_PORT_HINT = (
    "setting kafka_controller_port: STREAMLEDGER_KAFKA_CONTROLLER_PORT / --kafka-controller-port"
)
POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
MAIN_CLASS = "kafka.Kafka"


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
    def of(cls, settings: Settings) -> KafkaPaths:
        directory = settings.home / "kafka"
        logs = settings.home / "logs"
        return cls(
            directory=directory,
            data=directory / "data",
            properties=directory / "server.properties",
            log4j_config=directory / "log4j2.xml",
            cluster_id=directory / "cluster.id",
            pid=directory / "broker.pid",
            log=logs / "kafka.log",
            console_log=logs / "kafka.out",
            format_log=logs / "kafka-format.log",
        )


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


def server_properties(settings: Settings, paths: KafkaPaths) -> str:
    host = "127.0.0.1"
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{settings.kafka_controller_port}",
        "listeners": (
            f"PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{host}:"
            f"{settings.kafka_controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(paths.data),
        # Topics are code (infra/topics.py): a typo in a topic name must fail, not create one.
        "auto.create.topics.enable": "false",
        "num.partitions": str(settings.partitions),
        "default.replication.factor": str(settings.replication_factor),
        "min.insync.replicas": str(settings.min_insync_replicas),
        # Internal topics on one node: consumer groups and transactions need these to work.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": str(CLEANER_DEDUPE_BUFFER_BYTES),
        # Two cores: Kafka's defaults (3 network, 8 I/O threads) only add context switches.
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    body = "".join(f"{key}={value}\n" for key, value in lines.items())
    return (
        "# Rendered by streamledger (infra/kafka_broker.py) at every start; edits are lost.\n"
        + body
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


def prepare(settings: Settings, paths: KafkaPaths) -> None:
    """Render the configuration and format the storage the first time."""
    paths.directory.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    paths.properties.write_text(server_properties(settings, paths))
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
    )
    run_logged(command, paths.format_log, FORMAT_TIMEOUT_S, "formatting the Kafka storage")


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
    try:
        parts = [int(part) for part in paths.pid.read_text().split()]
    except (FileNotFoundError, ValueError):
        return None
    if len(parts) == 2:
        return BrokerProcess(parts[0], parts[1])
    if len(parts) == 1 and is_broker_command_line(parts[0], paths):
        # A pid file of an earlier StreamLedger: identify the process by its command line.
        ticks = start_ticks_of(parts[0])
        return BrokerProcess(parts[0], ticks) if ticks is not None else None
    return None


def is_broker_command_line(pid: int, paths: KafkaPaths) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return MAIN_CLASS.encode() in arguments and str(paths.properties).encode() in arguments


def running_process(paths: KafkaPaths) -> BrokerProcess | None:
    process = read_process(paths)
    return process if process is not None and is_alive(process) else None


def is_running(settings: Settings) -> bool:
    return running_process(KafkaPaths.of(settings)) is not None


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


def check_ports_free(settings: Settings) -> None:
    """``PortInUseError`` naming the port and its setting when another program holds one."""
    check_port_free(settings.kafka_port, KAFKA_PORT_HINT)
    check_port_free(settings.kafka_controller_port, CONTROLLER_PORT_HINT)


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


def wait_until_ready(settings: Settings, paths: KafkaPaths, process: BrokerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not is_alive(process):
            raise start_failure(paths, "the broker exited during start-up")
        try:
            broker_count(settings, timeout_s=READINESS_REQUEST_TIMEOUT_S)
        except InfraError:
            time.sleep(READINESS_POLL_INTERVAL_S)
            continue
        return
    raise start_failure(paths, f"the broker did not answer within {START_TIMEOUT_S:g} s")


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


def report(settings: Settings, paths: KafkaPaths, running: bool, detail: str) -> ServiceReport:
    return ServiceReport(
        name="kafka",
        running=running,
        address=f"127.0.0.1:{settings.kafka_port}",
        log_path=paths.log,
        data_path=paths.data,
        detail=detail,
    )


def start(settings: Settings) -> ServiceReport:
    """Start the broker unless it already runs; return once an admin request succeeds."""
    paths = KafkaPaths.of(settings)
    process = running_process(paths)
    if process is not None:
        wait_until_ready(settings, paths, process)
        return report(settings, paths, True, f"already running, pid {process.pid}")
    ensure_installed(settings)
    check_ports_free(settings)
    started = time.monotonic()
    prepare(settings, paths)
    command = java_command(
        settings, paths, settings.kafka_heap_mb, MAIN_CLASS, str(paths.properties)
    )
    process = spawn_detached(command, paths)
    try:
        wait_until_ready(settings, paths, process)
    except InfraError:
        stop(settings)
        raise
    elapsed = time.monotonic() - started
    detail = f"started in {elapsed:.1f} s, Kafka {settings.kafka_version}, pid {process.pid}"
    return report(settings, paths, True, detail)


def stop(settings: Settings) -> None:
    """SIGTERM (controlled shutdown), wait a bounded time, then SIGKILL."""
    paths = KafkaPaths.of(settings)
    process = running_process(paths)
    if process is not None:
        signal_process(process, signal.SIGTERM)
        if not wait_for_exit(process, STOP_TIMEOUT_S):
            signal_process(process, signal.SIGKILL)
            if not wait_for_exit(process, KILL_TIMEOUT_S):
                raise InfraError(
                    f"Kafka broker pid {process.pid} survived SIGKILL for {KILL_TIMEOUT_S:g} s"
                )
    paths.pid.unlink(missing_ok=True)


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
    paths = KafkaPaths.of(settings)
    process = running_process(paths)
    if process is None:
        return report(settings, paths, False, "")
    try:
        brokers = broker_count(settings, timeout_s=STATUS_REQUEST_TIMEOUT_S)
    except InfraError:
        return report(settings, paths, True, f"pid {process.pid}, not answering admin requests")
    detail = f"pid {process.pid}, {brokers} broker, Kafka {settings.kafka_version}"
    return report(settings, paths, True, detail)


def reset(settings: Settings) -> None:
    """Stop the broker and delete its data, configuration and logs (the jar cache stays)."""
    stop(settings)
    paths = KafkaPaths.of(settings)
    shutil.rmtree(paths.directory, ignore_errors=True)
    for log in paths.log.parent.glob("kafka*"):
        log.unlink(missing_ok=True)
