"""A hot standby of the local PostgreSQL: physical streaming replication on this machine.

``start`` makes the standby from the running primary the first time (``pg_basebackup -R``:
a base backup plus ``standby.signal`` and ``primary_conninfo``, over the primary's unix socket
as the admin user, through the physical replication slot ``streamledger_standby`` so the
primary keeps every WAL segment the standby has not received, up to ``max_slot_wal_keep_size``).
It then listens on ``settings.postgres_standby_port`` and serves read-only queries::

    {home}/postgres-standby/data   the standby's data directory
    {home}/postgres-standby/run    its unix socket
    {home}/logs/postgresql-standby.log

``promote`` is the runbook step after the primary is lost (decision 0037): fence the old
primary (stop it if it still runs, and mark its data directory so ``infra up`` never starts it
again beside the new one), then ``pg_ctl promote`` the standby. Processes that use the local DSN
name both servers with ``target_session_attrs=primary``, so their next connection reaches the
promoted standby; the projection resumes from the offsets stored in it.

Errors: ``InfraError``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg

from infra import postgres_server
from infra.postgres_server import ClusterPaths
from infra.service import ServiceReport
from streamledger.errors import InfraError
from streamledger.settings import Settings

SERVICE_NAME: Final = "pg-standby"
SLOT_NAME: Final = "streamledger_standby"
BASE_BACKUP_TIMEOUT_S: Final = 300
PROMOTE_TIMEOUT_S: Final = 60
KILL_TIMEOUT_S: Final = 10.0
POLL_INTERVAL_S: Final = 0.1
# Written into the old primary's data directory by ``promote``: postgres_server refuses to start
# a cluster that carries it (two writable primaries would split the ledger).
FENCE_FILE_NAME: Final = postgres_server.FENCE_FILE_NAME

DROP_INACTIVE_SLOT: Final = (
    "SELECT pg_catalog.pg_drop_replication_slot(slot_name)"
    " FROM pg_catalog.pg_replication_slots WHERE slot_name = %s AND NOT active"
)
# Replay lag as a standby sees it: zero when it has replayed everything it received, else the age
# of the last replayed transaction; and whether the WAL receiver is streaming from a primary.
SELECT_STANDBY_STATE: Final = """
SELECT pg_catalog.pg_is_in_recovery(),
       CASE WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()
            THEN 0.0
            ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_catalog.pg_last_xact_replay_timestamp()),
                          0.0)::float8
       END,
       EXISTS (SELECT 1 FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming')
"""


@dataclass(frozen=True, slots=True)
class StandbyState:
    in_recovery: bool  # False once promoted
    replay_lag_s: float
    streaming: bool  # the WAL receiver is connected to a primary

    def text(self) -> str:
        if not self.in_recovery:
            return "promoted: now the primary"
        link = "streaming" if self.streaming else "NOT streaming"
        return f"standby, {link}, replay lag {self.replay_lag_s:.3f} s"


def standby_paths(settings: Settings) -> ClusterPaths:
    root = settings.home / "postgres-standby"
    return ClusterPaths(
        root=root,
        data=root / "data",
        socket_directory=root / "run",
        log=settings.home / "logs" / "postgresql-standby.log",
    )


def require_port(settings: Settings) -> int:
    if not settings.postgres_standby_port:
        raise InfraError(
            "no standby port: set STREAMLEDGER_POSTGRES_STANDBY_PORT (or --postgres-standby-port)"
            " for every process, so they know both servers (decision 0037)"
        )
    return settings.postgres_standby_port


def is_created(settings: Settings) -> bool:
    return (standby_paths(settings).data / "PG_VERSION").exists()


def start(settings: Settings) -> ServiceReport:
    """Create the standby from the running primary the first time, then start it."""
    port = require_port(settings)
    began = time.monotonic()
    binaries = postgres_server.require_binaries()
    paths = standby_paths(settings)
    postgres_server.prepare_directories(paths)
    created = False
    if not is_created(settings):
        base_backup(settings, binaries, paths)
        created = True
    if postgres_server.is_running(binaries, paths):
        return report(settings, running=True, detail="already running")
    postgres_server.check_port_free(port)
    postgres_server.write_configuration(paths, port)
    postgres_server.start_server(binaries, paths)
    action = "base backup taken and started" if created else "started"
    return report(settings, running=True, detail=f"{action} in {time.monotonic() - began:.1f} s")


def base_backup(settings: Settings, binaries: Path, paths: ClusterPaths) -> None:
    """``pg_basebackup`` of the primary into the standby's (empty) data directory."""
    primary = ClusterPaths.of(settings)
    with postgres_server.connect_admin(primary, settings.postgres_port, "postgres") as connection:
        connection.execute(DROP_INACTIVE_SLOT, (SLOT_NAME,))  # left by an earlier standby
    command = [
        str(binaries / "pg_basebackup"),
        "--host", str(postgres_server.socket_directory_for(primary)),
        "--port", str(settings.postgres_port),
        "--username", postgres_server.ADMIN_USER,
        "--pgdata", str(paths.data),
        "--wal-method=stream",
        "--write-recovery-conf",
        "--checkpoint=fast",
        "--create-slot", "--slot", SLOT_NAME,
        "--no-password",
    ]  # fmt: skip
    result = postgres_server.run_as_server_user(command, paths, timeout_s=BASE_BACKUP_TIMEOUT_S)
    if result.returncode != 0:
        raise InfraError(f"pg_basebackup failed: {postgres_server.tail(result.stdout, 5)}")


def stop(settings: Settings) -> None:
    postgres_server.stop_cluster(standby_paths(settings))


def reset(settings: Settings) -> None:
    postgres_server.reset_cluster(standby_paths(settings))


def state(settings: Settings) -> StandbyState:
    """Recovery, replay lag and streaming, asked of the standby over its socket."""
    paths = standby_paths(settings)
    try:
        with postgres_server.connect_admin(paths, require_port(settings), "postgres") as connection:
            row = connection.execute(SELECT_STANDBY_STATE).fetchone()
    except psycopg.Error as exc:
        raise InfraError(f"cannot ask the standby: {postgres_server.one_line(str(exc))}") from exc
    assert row is not None
    return StandbyState(in_recovery=bool(row[0]), replay_lag_s=float(row[1]), streaming=row[2])


def status(settings: Settings) -> ServiceReport:
    binaries = postgres_server.find_binaries()
    paths = standby_paths(settings)
    if binaries is None or not is_created(settings):
        return report(settings, running=False, detail="not created")
    if not postgres_server.is_running(binaries, paths):
        return report(settings, running=False, detail="")
    try:
        detail = state(settings).text()
    except InfraError as exc:
        detail = str(exc)
    return report(settings, running=True, detail=detail)


def promote(settings: Settings) -> list[str]:
    """Fence the old primary, then promote the standby; one line per step."""
    require_port(settings)
    binaries = postgres_server.require_binaries()
    paths = standby_paths(settings)
    if not is_created(settings) or not postgres_server.is_running(binaries, paths):
        raise InfraError(
            "no running standby to promote; `streamledger infra up --postgres-standby`"
        )
    if not state(settings).in_recovery:
        return [f"{SERVICE_NAME}  already promoted: it is the primary"]
    lines = [fence_primary(settings, binaries)]
    began = time.monotonic()
    command = [
        str(binaries / "pg_ctl"), "promote", "-D", str(paths.data),
        "-w", "-t", str(PROMOTE_TIMEOUT_S),
    ]  # fmt: skip
    result = postgres_server.run_as_server_user(
        command, paths, timeout_s=PROMOTE_TIMEOUT_S + postgres_server.PROCESS_GRACE_S
    )
    if result.returncode != 0:
        raise InfraError(f"pg_ctl promote failed: {postgres_server.one_line(result.stdout)}")
    lines.append(
        f"{SERVICE_NAME}  promoted in {time.monotonic() - began:.1f} s: the primary is now"
        f" 127.0.0.1:{settings.postgres_standby_port}"
    )
    return lines


def fence_primary(settings: Settings, binaries: Path) -> str:
    """Stop the old primary if it still runs (immediately: it is being replaced) and mark it."""
    primary = ClusterPaths.of(settings)
    was_running = (primary.data / "PG_VERSION").exists() and postgres_server.is_running(
        binaries, primary
    )
    if was_running:
        postgres_server.stop_cluster(primary, mode="immediate")
    if primary.data.is_dir():
        fence = primary.data / FENCE_FILE_NAME
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fence.write_text(
            f"fenced by `streamledger infra promote` at {at};"
            f" the primary is now 127.0.0.1:{settings.postgres_standby_port}\n"
        )
    action = "stopped and fenced" if was_running else "fenced (it was not running)"
    return f"postgresql  old primary {action}: `infra up` will not start it again"


def kill_primary(settings: Settings) -> int | None:
    """``kill -9`` the primary's postmaster (fault tests); its pid, or None when not running."""
    pid = postgres_server.postmaster_pid(ClusterPaths.of(settings))
    if pid is None or postgres_server.process_state(pid) in (None, "Z"):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while postgres_server.process_state(pid) not in (None, "Z"):
        if time.monotonic() > deadline:
            raise InfraError(f"PostgreSQL postmaster {pid} survived SIGKILL")
        time.sleep(POLL_INTERVAL_S)
    return pid


def report(settings: Settings, *, running: bool, detail: str) -> ServiceReport:
    paths = standby_paths(settings)
    return ServiceReport(
        name=SERVICE_NAME,
        running=running,
        address=f"{postgres_server.LISTEN_ADDRESS}:{settings.postgres_standby_port}",
        log_path=paths.log,
        data_path=paths.data,
        detail=detail,
    )
