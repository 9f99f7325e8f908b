"""The local Prometheus server: Debian's ``prometheus`` binary, run by the project without Docker.

Files, all under ``{home}``::

    {home}/prometheus/prometheus.yml        written on every start (scrape config + rule files)
    {home}/prometheus/targets/<job>.json    file-based service discovery, one file per job;
                                            rewritten by ``write_targets`` while Prometheus runs
    {home}/prometheus/data/                 the TSDB
    {home}/prometheus/prometheus.pid        "<pid> <start ticks>" of the running server
    {home}/logs/prometheus.log              the server's output

It listens on ``127.0.0.1:{prometheus_port}`` only, evaluates the rules in
``infra/prometheus/rules/`` (the same files the docker-compose Prometheus loads) and scrapes the
pipeline's ``/metrics`` endpoints named by ``ScrapeTargets`` (the port plan is in
``docs/metrics.md``). ``start_prometheus`` / ``stop_prometheus`` are what ``streamledger run
--with-prometheus`` calls; ``python -m infra.prometheus_server start|stop|status`` runs them alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra import postgres_server
from infra.kafka_broker import check_port_free, start_ticks_of
from infra.service import ServiceReport
from streamledger.errors import InfraError
from streamledger.settings import Settings, load_settings

SERVICE_NAME = "prometheus"
LISTEN_HOST = "127.0.0.1"
APT_PACKAGE = "prometheus"  # Debian's: the server and promtool
APT_INSTALL = ("apt-get", "install", "-y", "-q", "--no-install-recommends")
APT_UPDATE_TIMEOUT_S = 300
APT_INSTALL_TIMEOUT_S = 600
RULES_DIRECTORY = Path(__file__).resolve().parent / "prometheus" / "rules"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
READY_REQUEST_TIMEOUT_S = 2.0
SCRAPE_INTERVAL_S = 5  # local: fresh graphs while a demo runs
RETENTION = "7d"
PORT_HINT = "set STREAMLEDGER_PROMETHEUS_PORT or --prometheus-port"

PROCESSOR_JOB = "streamledger-processor"
PROJECTION_JOB = "streamledger-projection"
VERIFY_JOB = "streamledger-verify"
API_JOB = "streamledger-api"
SUPERVISOR_JOB = "streamledger-supervisor"  # `streamledger run` itself (stalls, restarts)
# `streamledger reconcile` matchers and the reconciliation projection (issue 20, decision 0076)
RECONCILE_JOB = "streamledger-reconcile"
JOBS = (PROCESSOR_JOB, PROJECTION_JOB, VERIFY_JOB, API_JOB, SUPERVISOR_JOB, RECONCILE_JOB)
RUN_PROCESSORS = 2  # `streamledger run`'s default topology, for the stand-alone `start`
RUN_PROJECTIONS = 1
RUN_API_PORT = 8080  # `streamledger api`'s default port (api/settings.py)


@dataclass(frozen=True, slots=True)
class PrometheusPaths:
    directory: Path
    config: Path
    targets: Path
    data: Path
    pid: Path
    log: Path

    @classmethod
    def of(cls, settings: Settings) -> PrometheusPaths:
        directory = settings.home / "prometheus"
        return cls(
            directory=directory,
            config=directory / "prometheus.yml",
            targets=directory / "targets",
            data=directory / "data",
            pid=directory / "prometheus.pid",
            log=settings.home / "logs" / "prometheus.log",
        )


@dataclass(frozen=True, slots=True)
class ScrapeTargets:
    """The loopback ``/metrics`` ports of the pipeline's processes, per job."""

    processors: tuple[int, ...] = ()
    projections: tuple[int, ...] = ()
    verifiers: tuple[int, ...] = ()
    apis: tuple[int, ...] = ()  # `streamledger api` serves /metrics on its own HTTP port
    supervisors: tuple[int, ...] = ()  # `streamledger run`: the port after the last child's
    reconcilers: tuple[int, ...] = ()  # after the supervisor's and the webhook dispatchers'

    def by_job(self) -> dict[str, tuple[int, ...]]:
        return {
            PROCESSOR_JOB: self.processors,
            PROJECTION_JOB: self.projections,
            VERIFY_JOB: self.verifiers,
            API_JOB: self.apis,
            SUPERVISOR_JOB: self.supervisors,
            RECONCILE_JOB: self.reconcilers,
        }


def port_plan(
    settings: Settings,
    *,
    processors: int,
    projections: int,
    verifiers: int = 0,
    api_port: int | None = None,
    supervisor: bool = False,
    notifiers: int = 0,
    reconcilers: int = 0,
) -> ScrapeTargets:
    """``streamledger run``'s ports: processors from ``metrics_port`` on, consecutive, then the
    projections, then a verifier (``verify --every-s``) if it runs one, then the supervisor
    itself, then the webhook dispatchers (not scraped yet), then the reconciliation matchers and,
    with any, the reconciliation projection; the API, if it runs, on its own ``api_port``
    (``docs/metrics.md``)."""
    first = settings.metrics_port
    after_children = first + processors + projections + verifiers
    reconcile_first = after_children + 1 + notifiers
    reconcile_processes = reconcilers + 1 if reconcilers else 0  # + the projection
    return ScrapeTargets(
        processors=tuple(range(first, first + processors)),
        projections=tuple(range(first + processors, first + processors + projections)),
        verifiers=tuple(
            range(first + processors + projections, first + processors + projections + verifiers)
        ),
        apis=() if api_port is None else (api_port,),
        supervisors=(after_children,) if supervisor else (),
        reconcilers=tuple(range(reconcile_first, reconcile_first + reconcile_processes)),
    )


# --------------------------------------------------------------------------- installation


def find_binaries() -> tuple[str, str] | None:
    """``(prometheus, promtool)`` on PATH, or None."""
    server, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return (server, promtool) if server and promtool else None


def ensure_installed() -> str:
    """Debian's ``prometheus`` package (server + promtool); installed with apt-get when root."""
    if find_binaries() is not None:
        return "server and promtool present"
    if os.geteuid() != 0:
        raise InfraError(
            "prometheus and promtool not found; `sudo apt-get install --no-install-recommends"
            " prometheus`, or run `streamledger infra install` as root"
        )
    try:
        postgres_server.run_apt([*APT_INSTALL, APT_PACKAGE], APT_INSTALL_TIMEOUT_S)
    except InfraError:  # a fresh machine has no package lists yet
        postgres_server.run_apt(["apt-get", "update", "-q"], APT_UPDATE_TIMEOUT_S)
        postgres_server.run_apt([*APT_INSTALL, APT_PACKAGE], APT_INSTALL_TIMEOUT_S)
    if find_binaries() is None:
        raise InfraError("apt-get installed prometheus but prometheus/promtool are not on PATH")
    return "server and promtool installed with apt-get"


def require_server() -> str:
    binaries = find_binaries()
    if binaries is None:
        raise InfraError("prometheus not found; run `streamledger infra install`")
    return binaries[0]


# --------------------------------------------------------------------------- configuration


def render_config(settings: Settings, *, scrape_interval_s: int = SCRAPE_INTERVAL_S) -> str:
    """The local server's configuration. JSON is YAML, so no YAML library is needed."""
    paths = PrometheusPaths.of(settings)
    interval = f"{scrape_interval_s}s"
    config = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"stack": "local"},
        },
        "rule_files": [str(RULES_DIRECTORY / "*.yml")],
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{LISTEN_HOST}:{settings.prometheus_port}"]}],
            },
            *(
                {
                    "job_name": job,
                    "file_sd_configs": [{"files": [str(paths.targets / f"{job}.json")]}],
                }
                for job in JOBS
            ),
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def write_targets(settings: Settings, targets: ScrapeTargets) -> None:
    """(Re)write the file-SD target lists; a running Prometheus picks them up by itself."""
    directory = PrometheusPaths.of(settings).targets
    directory.mkdir(parents=True, exist_ok=True)
    for job, ports in targets.by_job().items():
        groups = [{"targets": [f"{LISTEN_HOST}:{port}" for port in ports]}] if ports else []
        temporary = directory / f".{job}.json.tmp"
        temporary.write_text(json.dumps(groups, indent=2) + "\n")
        temporary.replace(directory / f"{job}.json")  # atomic: never a half-written file


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """Identified by pid and start time, so a recycled pid is never mistaken for ours."""

    pid: int
    start_ticks: int


def read_process(paths: PrometheusPaths) -> ServerProcess | None:
    try:
        pid, ticks = (int(part) for part in paths.pid.read_text().split())
    except (FileNotFoundError, ValueError):
        return None
    return ServerProcess(pid, ticks)


def is_alive(process: ServerProcess) -> bool:
    if start_ticks_of(process.pid) != process.start_ticks:
        return False
    try:
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def running_process(paths: PrometheusPaths) -> ServerProcess | None:
    process = read_process(paths)
    return process if process is not None and is_alive(process) else None


def server_command(settings: Settings, server: str, paths: PrometheusPaths) -> list[str]:
    return [
        server,
        f"--config.file={paths.config}",
        f"--storage.tsdb.path={paths.data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={LISTEN_HOST}:{settings.prometheus_port}",
    ]


def spawn_detached(command: list[str], paths: PrometheusPaths) -> ServerProcess:
    """Started by a throwaway shell, so the server is re-parented to init and outlives us."""
    paths.pid.unlink(missing_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    launcher = ["sh", "-c", '"$@" & echo $! > "$0"', str(paths.pid), *command]
    with paths.log.open("ab") as log:
        subprocess.run(
            launcher, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, check=True, timeout=KILL_TIMEOUT_S,
        )  # fmt: skip
    try:
        pid = int(paths.pid.read_text())
    except (FileNotFoundError, ValueError):
        raise InfraError(f"Prometheus did not start; see {paths.log}") from None
    ticks = start_ticks_of(pid)
    if ticks is None:
        raise InfraError(f"Prometheus exited at once; see {paths.log}: {log_tail(paths.log)}")
    process = ServerProcess(pid, ticks)
    paths.pid.write_text(f"{process.pid} {process.start_ticks}\n")
    return process


def is_ready(settings: Settings) -> bool:
    url = f"http://{LISTEN_HOST}:{settings.prometheus_port}/-/ready"
    try:
        with urllib.request.urlopen(url, timeout=READY_REQUEST_TIMEOUT_S) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(settings: Settings, paths: PrometheusPaths, process: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not is_alive(process):
            raise InfraError(f"Prometheus exited during start-up; {log_tail(paths.log)}")
        if is_ready(settings):
            return
        time.sleep(POLL_INTERVAL_S)
    raise InfraError(f"Prometheus was not ready within {START_TIMEOUT_S:g} s; see {paths.log}")


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return " | ".join(text[-lines:]) or "(log is empty)"


def wait_for_exit(process: ServerProcess, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(process):
            return True
        time.sleep(POLL_INTERVAL_S)
    return False


# --------------------------------------------------------------------------- the service


def report(settings: Settings, running: bool, detail: str) -> ServiceReport:
    paths = PrometheusPaths.of(settings)
    return ServiceReport(
        name=SERVICE_NAME,
        running=running,
        address=f"{LISTEN_HOST}:{settings.prometheus_port}",
        log_path=paths.log,
        data_path=paths.data,
        detail=detail,
    )


def start_prometheus(
    settings: Settings,
    targets: ScrapeTargets | None = None,
    *,
    scrape_interval_s: int = SCRAPE_INTERVAL_S,
) -> ServiceReport:
    """Start the local Prometheus (or keep the running one), scraping ``targets``.

    ``targets`` None: keep the target files as they are (empty on a first start). The config is
    written on every call; a running server keeps its old one until restarted, but targets
    change live through file-based discovery."""
    paths = PrometheusPaths.of(settings)
    paths.data.mkdir(parents=True, exist_ok=True)
    if targets is not None or not paths.targets.is_dir():
        write_targets(settings, targets or ScrapeTargets())
    paths.config.write_text(render_config(settings, scrape_interval_s=scrape_interval_s))
    process = running_process(paths)
    if process is not None:
        wait_until_ready(settings, paths, process)
        return report(settings, True, f"already running, pid {process.pid}")
    server = require_server()
    check_port_free(settings.prometheus_port, PORT_HINT)
    started = time.monotonic()
    process = spawn_detached(server_command(settings, server, paths), paths)
    try:
        wait_until_ready(settings, paths, process)
    except InfraError:
        stop_prometheus(settings)
        raise
    elapsed = time.monotonic() - started
    return report(settings, True, f"started in {elapsed:.1f} s, pid {process.pid}")


def stop_prometheus(settings: Settings) -> None:
    """SIGTERM, a bounded wait, then SIGKILL. A no-op when it is not running."""
    paths = PrometheusPaths.of(settings)
    process = running_process(paths)
    if process is not None:
        signal_process(process, signal.SIGTERM)  # flushes the TSDB head and exits
        if not wait_for_exit(process, STOP_TIMEOUT_S):
            signal_process(process, signal.SIGKILL)
            if not wait_for_exit(process, KILL_TIMEOUT_S):
                raise InfraError(f"Prometheus pid {process.pid} survived SIGKILL")
    paths.pid.unlink(missing_ok=True)


def signal_process(process: ServerProcess, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited between the check and the signal
        os.kill(process.pid, signal_number)


def status(settings: Settings) -> ServiceReport:
    process = running_process(PrometheusPaths.of(settings))
    if process is None:
        return report(settings, False, "")
    state = "ready" if is_ready(settings) else "not ready"
    return report(settings, True, f"pid {process.pid}, {state}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.prometheus_server start|stop|status`` with the usual environment."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments not in (["start"], ["stop"], ["status"]):
        print("usage: python -m infra.prometheus_server start|stop|status", file=sys.stderr)
        return 2
    settings = load_settings()
    if arguments == ["stop"]:
        stop_prometheus(settings)
        print(f"{SERVICE_NAME:<11} stopped")
        return 0
    if arguments == ["start"]:
        targets = port_plan(
            settings,
            processors=RUN_PROCESSORS,
            projections=RUN_PROJECTIONS,
            verifiers=1,
            api_port=RUN_API_PORT,
            supervisor=True,
        )
        service = start_prometheus(settings, targets)
    else:
        service = status(settings)
    print(service.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
