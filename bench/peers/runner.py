"""Run a peer engine on a workload and check its output, from the bench's own process.

``ensure_venv(name)`` makes ``.venv-peers-<name>`` on demand from the pinned
``bench/peers/requirements-<name>.txt`` (pip's cache in ``~/.cache/pip``) and installs this
project into it with ``--no-deps`` (Quix Streams pins its own confluent-kafka, which differs from
ours; the peers need only the pure core and the codec, i.e. fastavro). A peer run: fresh topics,
the workload produced, the peer started as a child process, its consumer group's committed
offsets polled until every command is committed (commands/s from the first commit seen to the
last), then its events and outcomes checked like StreamLedger's.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench import ledger_check
from bench.bench_processor import delete_topics
from bench.processor_suite import REPO_ROOT, fresh, stop_process, wait_for_group
from bench.results import BenchRun
from bench.workloads import Workload, produce
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.processor_settings import LIMITS
from schemas.topics import COMMANDS_TOPIC, EVENTS_TOPIC, OUTCOMES_TOPIC
from streamledger.settings import Settings

PEERS_DIRECTORY = Path(__file__).resolve().parent
INSTALL_TIMEOUT_S = 900.0
PEER_TIMEOUT_S = 900.0
# Under a backlog (the bench's pre-filled topic) StreamLedger's processor commits one transaction
# per ``batch_records_max`` records; the peers commit at least that often (their own checkpoint
# interval stays at its default), so no engine is timed with bigger transactions.
PEER_COMMIT_EVERY_RECORDS = {limit.name: limit.default for limit in LIMITS}["batch_records_max"]


@dataclass(frozen=True, slots=True)
class Peer:
    name: str  # faust / quix
    label: str
    module: str
    arguments: tuple[str, ...]

    @property
    def venv(self) -> Path:
        return REPO_ROOT / f".venv-peers-{self.name}"

    @property
    def requirements(self) -> Path:
        return PEERS_DIRECTORY / f"requirements-{self.name}.txt"


PEERS = (
    Peer("faust", "faust-streaming EOS", "bench.peers.faust_ledger", ("worker", "-l", "warn")),
    Peer("quix", "Quix Streams EOS", "bench.peers.quix_ledger", ()),
)


def peer_connection_environment(settings: Settings) -> dict[str, str]:
    """How a peer connects, from ``client_config`` (as the stack's admin, like the harness):
    BENCH_BOOTSTRAP, and under scram BENCH_SASL_MECHANISM / _USERNAME / _PASSWORD."""
    connection = client_config(settings, ADMIN_PRINCIPAL)
    environment = {"BENCH_BOOTSTRAP": connection["bootstrap.servers"]}
    if "sasl.mechanisms" in connection:
        environment["BENCH_SASL_MECHANISM"] = connection["sasl.mechanisms"]
        environment["BENCH_SASL_USERNAME"] = connection["sasl.username"]
        environment["BENCH_SASL_PASSWORD"] = connection["sasl.password"]
    return environment


def ensure_venv(peer: Peer) -> Path:
    python = peer.venv / "bin" / "python"
    marker = peer.venv / ".bench-installed"
    wanted = peer.requirements.read_text()
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    if not python.exists():
        _run([_base_python(), "-m", "venv", str(peer.venv)])
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(peer.requirements)])
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO_ROOT)])
    marker.write_text(wanted)
    return python


def _base_python() -> str:
    import sys

    return getattr(sys, "_base_executable", sys.executable)


def _run(command: list[str]) -> None:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
        cwd=REPO_ROOT,
    )  # fmt: skip
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {completed.stderr[-2000:]}")


def run_peer(
    run: BenchRun,
    settings: Settings,
    peer: Peer,
    workload: Workload,
    *,
    repetitions: int,
    partitions: int,
) -> None:
    try:
        python = ensure_venv(peer)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        run.findings.append(f"{peer.label}: could not be installed: {exc}")
        return
    for repetition in range(repetitions):
        scoped = fresh(settings, partitions)
        group = f"{scoped.topic_prefix}peer-{peer.name}"
        log_path = settings.home / "logs" / f"peer-{peer.name}-{scoped.topic_prefix}log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        (settings.home / "peers").mkdir(parents=True, exist_ok=True)
        process: subprocess.Popen[bytes] | None = None
        figure = run.figure("processor", f"{peer.label} ({workload.name})", "commands/s")
        try:
            produce(
                client_config(scoped, ADMIN_PRINCIPAL),
                scoped.topic(COMMANDS_TOPIC),
                workload.records,
            )
            environment = {
                **{k: v for k, v in os.environ.items() if not k.startswith("STREAMLEDGER_")},
                **peer_connection_environment(scoped),
                "BENCH_PARTITIONS": str(partitions),
                "BENCH_GROUP": group,
                "BENCH_COMMANDS_TOPIC": scoped.topic(COMMANDS_TOPIC),
                "BENCH_EVENTS_TOPIC": scoped.topic(EVENTS_TOPIC),
                "BENCH_OUTCOMES_TOPIC": scoped.topic(OUTCOMES_TOPIC),
                "BENCH_COMMIT_EVERY": str(PEER_COMMIT_EVERY_RECORDS),
                "BENCH_STATE_DIR": str(
                    settings.home / "peers" / f"{peer.name}-{uuid.uuid4().hex[:6]}"
                ),
            }
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [str(python), "-m", peer.module, *peer.arguments],
                    env=environment, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                )  # fmt: skip
            try:
                rate, peaks = wait_for_group(
                    scoped, group, len(workload.records), partitions, [process.pid],
                    timeout_s=PEER_TIMEOUT_S, processes=[process],
                )  # fmt: skip
            except AssertionError as exc:
                tail = log_path.read_text(errors="replace")[-1500:]
                run.findings.append(
                    f"{peer.label} ({workload.name}): did not finish: {exc}; log: {tail}"
                )
                figure.correct = False
                return
            figure.values.append(rate)
            run.add("memory", f"peak RSS: {peer.label}", "MiB", peaks[process.pid] / 2**20)
            stop_process(process)
            events = ledger_check.read_values(
                client_config(scoped, ADMIN_PRINCIPAL), scoped.topic(EVENTS_TOPIC), partitions
            )
            outcomes = ledger_check.read_values(
                client_config(scoped, ADMIN_PRINCIPAL), scoped.topic(OUTCOMES_TOPIC), partitions
            )
            # the input as the peer read it, broker timestamps (ledger_check): per repetition
            records = ledger_check.read_input(
                client_config(scoped, ADMIN_PRINCIPAL),
                scoped.topic(COMMANDS_TOPIC),
                partitions,
                group,
            )
            result = ledger_check.check(ledger_check.expected_fold(records), events, outcomes)
            print(f"  check {peer.label} ({workload.name}) #{repetition + 1}: {result.summary()}",
                  flush=True)  # fmt: skip
            figure.correct = result.passed if figure.correct in (None, True) else False
            if not result.passed:
                run.findings.append(
                    f"{peer.label} ({workload.name}) #{repetition + 1}: {result.summary()}"
                )
        finally:
            if process is not None:
                stop_process(process)
            delete_topics(scoped)
