"""A project-local PostgreSQL cluster: install, initdb, start, stop, status, reset.

The cluster lives under ``{home}/postgres`` (git-ignored): ``data/`` is the data directory and
``run/`` holds the unix socket. The server listens on 127.0.0.1 only, at
``settings.postgres_port``, and logs to ``{home}/logs/postgresql.log``.

PostgreSQL refuses to run as root. When we are root, every server binary runs as the
``postgres`` OS user (``subprocess`` drops to it with ``user=``/``group=``), the cluster's
directories are owned by it, and every parent of the data directory is made traversable for it.
Otherwise everything runs as the current user.

After a start the roles and the database are provisioned idempotently, by
``infra/postgres_provision.sql`` (the same script docker-compose.yml's PostgreSQL runs):

- ``streamledger`` (LOGIN): the app role; owns the ``streamledger`` database and its schema;
- ``streamledger_reader`` (LOGIN, NOBYPASSRLS, read-only by default): the operator's
  tenant-scoped read role that row-level security policies apply to (see
  ``projections/migrations``); it names its tenant with ``set_config``;
- ``streamledger_api`` (LOGIN, NOBYPASSRLS, read-only by default): the HTTP API's read role; it
  sees only the tenant of the API key whose digest the request binds (decision 0024).
The app role has BYPASSRLS: row-level security is FORCEd on the tenant tables and the projection
writes every tenant with COPY.

Both authenticate with SCRAM over TCP. Only the admin user ``postgres`` may connect over the
unix socket (trust), and that socket is only reachable by the cluster's OS user (mode 0700).

Errors: ``InfraError`` (cannot install/start/stop; start failures name the log and quote its
last lines) and ``PortInUseError`` (the port is taken by something else; names the setting).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from infra.service import ServiceReport
from streamledger.errors import InfraError, PortInUseError
from streamledger.settings import Settings

logger = logging.getLogger("streamledger.infra.postgres")

SERVICE_NAME = "postgresql"
LISTEN_ADDRESS = "127.0.0.1"
VERSION_MIN = 15
DEBIAN_BINARIES_ROOT = Path("/usr/lib/postgresql")
APT_PACKAGES: tuple[str, ...] = (f"postgresql-{VERSION_MIN}", "postgresql")
APT_INSTALL: tuple[str, ...] = (
    "apt-get",
    "install",
    "-y",
    "--no-install-recommends",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)
SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"
SERVER_OS_USER = "postgres"  # the OS user the server runs as when we are root

ADMIN_USER = "postgres"  # the cluster's superuser (initdb -U), socket-only
APP_ROLE = "streamledger"
# Fixed local-stack credentials (the DSN in settings.py uses them); the cluster listens on
# loopback only. Production points STREAMLEDGER_DATABASE_URL at its own server and secrets.
APP_PASSWORD = "streamledger"  # noqa: S105
READER_ROLE = "streamledger_reader"
READER_PASSWORD = "streamledger_reader"  # noqa: S105
API_ROLE = "streamledger_api"
API_PASSWORD = "streamledger_api"  # noqa: S105
DATABASE_NAME = "streamledger"

# Limits, all finite.
START_TIMEOUT_S = 60  # pg_ctl start -w: crash recovery after a kill -9 can take a while
STOP_TIMEOUT_S = 60
INITDB_TIMEOUT_S = 120
STATUS_TIMEOUT_S = 15
CONNECT_TIMEOUT_S = 10
APT_UPDATE_TIMEOUT_S = 300
APT_INSTALL_TIMEOUT_S = 900
PROCESS_GRACE_S = 15  # on top of pg_ctl's own timeout, before we give up on pg_ctl itself
LOG_TAIL_LINES = 5
SOCKET_PATH_BYTES_MAX = 100  # sockaddr_un.sun_path is 108 bytes including the terminator

# Local server settings. fsync and synchronous_commit stay on: this is a ledger.
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("listen_addresses", LISTEN_ADDRESS),
    ("max_connections", "100"),
    ("shared_buffers", "128MB"),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("password_encryption", "scram-sha-256"),
    ("unix_socket_permissions", "0700"),
    ("timezone", "UTC"),
    ("log_timezone", "UTC"),
    ("logging_collector", "off"),  # stderr goes to pg_ctl's -l file
    ("log_line_prefix", "%m [%p] %q%u@%d "),
    ("log_min_duration_statement", "1000"),
    # Physical replication to the hot standby (infra/postgres_standby.py, decision 0037). The
    # standby's slot keeps WAL for it; a standby gone for good stops holding WAL past this bound.
    ("wal_level", "replica"),
    ("max_slot_wal_keep_size", "1GB"),
    ("hot_standby", "on"),
    ("hot_standby_feedback", "on"),  # API reads on the standby are not cancelled by vacuum
)
# ``infra promote`` writes this into the old primary's data directory; such a cluster is never
# started again (two writable primaries would split the ledger).
FENCE_FILE_NAME = "streamledger.fenced"
INCLUDED_CONFIG_NAME = "streamledger.conf"
INCLUDE_LINE = f"include = '{INCLUDED_CONFIG_NAME}'"

# Authentication: admin over the socket only; app and read roles over TCP with SCRAM.
PG_HBA = f"""# Written by StreamLedger (infra/postgres_server.py) on every start.
# TYPE  DATABASE  USER  [ADDRESS]  METHOD
local   all  {ADMIN_USER}  trust
local   replication  {ADMIN_USER}  trust
host    all  {APP_ROLE},{READER_ROLE},{API_ROLE}  {LISTEN_ADDRESS}/32  scram-sha-256
"""

PG_CTL_STATUS_RUNNING = 0
PG_CTL_STATUS_NOT_RUNNING = 3
PG_CTL_STATUS_NO_DATA_DIRECTORY = 4
POSTMASTER_PID_PORT_LINE = 3  # 0-based line of postmaster.pid holding the port

SELECT_DATABASE_EXISTS = "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s"
# Owned by the admin at first: the provisioning script below makes the app role its owner.
CREATE_DATABASE = "CREATE DATABASE {database} ENCODING 'UTF8' TEMPLATE template0"
# The roles, the database's owner and its grants: one script shared with docker-compose.yml's
# PostgreSQL (mounted into /docker-entrypoint-initdb.d/), so the two stacks cannot drift.
PROVISION_SQL_PATH = Path(__file__).with_name("postgres_provision.sql")


@dataclass(frozen=True, slots=True)
class ClusterPaths:
    """Where the local cluster keeps its files."""

    root: Path  # {home}/postgres
    data: Path
    socket_directory: Path
    log: Path

    @classmethod
    def of(cls, settings: Settings) -> ClusterPaths:
        root = settings.home / "postgres"
        return cls(
            root=root,
            data=root / "data",
            socket_directory=root / "run",
            log=settings.home / "logs" / "postgresql.log",
        )


# --------------------------------------------------------------------------- public API


def ensure_installed(settings: Settings) -> None:
    """Make sure PostgreSQL >= 15 server binaries exist; install them with apt-get when root."""
    del settings  # the binaries are machine-wide; the signature matches the other services
    if find_binaries() is not None:
        return
    if os.geteuid() != 0:
        raise InfraError(
            f"PostgreSQL {VERSION_MIN}+ server binaries not found (initdb, pg_ctl); install them,"
            f" e.g. `sudo apt-get install postgresql-{VERSION_MIN}`, or run as root"
        )
    install_with_apt()
    if find_binaries() is None:
        raise InfraError(
            f"apt-get ran but no PostgreSQL {VERSION_MIN}+ server binaries were found under"
            f" {DEBIAN_BINARIES_ROOT}; install postgresql-{VERSION_MIN} by hand"
        )


def start(settings: Settings) -> ServiceReport:
    """Start the local cluster (initdb first when needed) and provision roles and database."""
    began = time.monotonic()
    ensure_installed(settings)
    binaries = require_binaries()
    paths = ClusterPaths.of(settings)
    prepare_directories(paths)
    check_not_fenced(paths)
    initialized = False
    if not (paths.data / "PG_VERSION").exists():
        initialize_cluster(binaries, paths)
        initialized = True
    if is_running(binaries, paths):
        check_running_port(paths, settings.postgres_port)
        provision(paths, settings.postgres_port)
        refresh_authentication(paths, settings.postgres_port)
        return report(settings, running=True, detail="already running")
    check_port_free(settings.postgres_port)
    write_configuration(paths, settings.postgres_port)
    start_server(binaries, paths)
    provision(paths, settings.postgres_port)
    elapsed_s = time.monotonic() - began
    action = "initialized and started" if initialized else "started"
    return report(settings, running=True, detail=f"{action} in {elapsed_s:.1f} s")


def check_not_fenced(paths: ClusterPaths) -> None:
    fence = paths.data / FENCE_FILE_NAME
    if fence.is_file():
        raise InfraError(
            f"{paths.data} was replaced by the promoted standby ({fence.read_text().strip()});"
            f" it is never started again: move it away or delete {paths.root} to build a new"
            " primary (docs/availability.md)"
        )


def stop(settings: Settings) -> None:
    """Stop the local cluster (fast shutdown: open transactions roll back). No-op when stopped."""
    stop_cluster(ClusterPaths.of(settings))


def stop_cluster(paths: ClusterPaths, mode: str = "fast") -> None:
    """``pg_ctl stop -m mode`` of the cluster in ``paths``; no-op when stopped."""
    binaries = find_binaries()
    if binaries is None or not (paths.data / "PG_VERSION").exists():
        return
    if not is_running(binaries, paths):
        return
    command = [
        str(binaries / "pg_ctl"),
        "stop",
        "-D",
        str(paths.data),
        "-m",
        mode,
        "-w",
        "-t",
        str(STOP_TIMEOUT_S),
    ]
    result = run_as_server_user(command, paths, timeout_s=STOP_TIMEOUT_S + PROCESS_GRACE_S)
    if result.returncode != 0:
        raise InfraError(
            f"PostgreSQL did not stop within {STOP_TIMEOUT_S} s: {one_line(result.stdout)};"
            f" log: {paths.log}"
        )


def status(settings: Settings) -> ServiceReport:
    """Whether the local cluster runs, where it listens, and its version."""
    binaries = find_binaries()
    paths = ClusterPaths.of(settings)
    if binaries is None:
        return report(settings, running=False, detail="server binaries not installed")
    if not (paths.data / "PG_VERSION").exists():
        return report(settings, running=False, detail="not initialized")
    if (paths.data / FENCE_FILE_NAME).is_file():
        return report(settings, running=False, detail="fenced: replaced by the promoted standby")
    version = (paths.data / "PG_VERSION").read_text(encoding="ascii").strip()
    if not is_running(binaries, paths):
        return report(settings, running=False, detail=f"PostgreSQL {version}")
    port = running_port(paths)
    address = f"{LISTEN_ADDRESS}:{port}" if port is not None else ""
    return ServiceReport(
        name=SERVICE_NAME,
        running=True,
        address=address or f"{LISTEN_ADDRESS}:{settings.postgres_port}",
        log_path=paths.log,
        data_path=paths.data,
        detail=f"PostgreSQL {version}",
    )


def reset(settings: Settings) -> None:
    """Stop the cluster, then delete its data (the log file is kept for post-mortems)."""
    reset_cluster(ClusterPaths.of(settings))


def reset_cluster(paths: ClusterPaths) -> None:
    stop_cluster(paths)
    if paths.root.exists():
        shutil.rmtree(paths.root)


def admin_connection_arguments(settings: Settings) -> dict[str, str | int]:
    """psycopg.connect() keywords for the admin user over the local socket (tests, tooling)."""
    paths = ClusterPaths.of(settings)
    return {
        "host": str(socket_directory_for(paths)),
        "port": settings.postgres_port,
        "user": ADMIN_USER,
        "dbname": DATABASE_NAME,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }


SCRATCH_DATABASE_STATEMENTS = (
    "CREATE DATABASE {database} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0",
    "GRANT CONNECT ON DATABASE {database} TO {reader}",
    "GRANT CONNECT ON DATABASE {database} TO {api}",
)
DROP_SCRATCH_DATABASE = "DROP DATABASE IF EXISTS {database} WITH (FORCE)"


def create_scratch_database(settings: Settings, database: str) -> None:
    """A fresh, empty database owned by the app role and readable by the read roles.

    Tests and benchmarks use one per run so they never share tables with the live database."""
    for statement in SCRATCH_DATABASE_STATEMENTS:
        execute_as_admin(settings, statement, database)


def drop_scratch_database(settings: Settings, database: str) -> None:
    execute_as_admin(settings, DROP_SCRATCH_DATABASE, database)


def execute_as_admin(settings: Settings, statement: str, database: str) -> None:
    """Run one statement with ``{database}``, ``{owner}``, ``{reader}`` and ``{api}`` as
    identifiers."""
    arguments = admin_connection_arguments(settings)
    with psycopg.connect(**arguments, autocommit=True) as connection:  # type: ignore[arg-type]
        connection.execute(
            sql.SQL(statement).format(
                database=sql.Identifier(database),
                owner=sql.Identifier(APP_ROLE),
                reader=sql.Identifier(READER_ROLE),
                api=sql.Identifier(API_ROLE),
            )
        )


def reader_dsn(settings: Settings) -> str:
    """The DSN of the tenant-scoped read role on the local cluster."""
    return (
        f"postgresql://{READER_ROLE}:{READER_PASSWORD}@{LISTEN_ADDRESS}:{settings.postgres_port}"
        f"/{DATABASE_NAME}"
    )


# --------------------------------------------------------------------------- binaries


def find_binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL >= 15 (Debian layout, then PATH)."""
    candidates: list[tuple[int, Path]] = []
    if DEBIAN_BINARIES_ROOT.is_dir():
        for version_directory in DEBIAN_BINARIES_ROOT.iterdir():
            if not version_directory.name.isdigit():
                continue
            binaries = version_directory / "bin"
            if has_server_binaries(binaries):
                candidates.append((int(version_directory.name), binaries))
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        binaries = Path(on_path).resolve().parent
        version = binaries_major_version(binaries)
        if version is not None and has_server_binaries(binaries):
            candidates.append((version, binaries))
    eligible = [candidate for candidate in candidates if candidate[0] >= VERSION_MIN]
    if not eligible:
        return None
    return max(eligible)[1]


def require_binaries() -> Path:
    binaries = find_binaries()
    if binaries is None:
        raise InfraError(f"PostgreSQL {VERSION_MIN}+ server binaries not found")
    return binaries


def has_server_binaries(binaries: Path) -> bool:
    return all(os.access(binaries / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def binaries_major_version(binaries: Path) -> int | None:
    """The major version printed by ``pg_ctl --version`` ("pg_ctl (PostgreSQL) 15.8 ...")."""
    try:
        result = subprocess.run(
            [str(binaries / "pg_ctl"), "--version"],
            capture_output=True,
            text=True,
            timeout=STATUS_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", result.stdout)
    return int(match.group(1)) if match else None


def install_with_apt() -> None:
    logger.warning("PostgreSQL server binaries not found; installing them with apt-get")
    run_apt(["apt-get", "update"], timeout_s=APT_UPDATE_TIMEOUT_S)
    failures: list[str] = []
    for package in APT_PACKAGES:
        try:
            run_apt([*APT_INSTALL, package], APT_INSTALL_TIMEOUT_S)
        except InfraError as exc:
            failures.append(str(exc))
            continue
        return
    raise InfraError("; ".join(failures))


def run_apt(command: Sequence[str], timeout_s: int) -> None:
    """Run apt-get with the caller's environment (proxies) and no terminal.

    Without a terminal on stdin debconf falls back to its non-interactive frontend, and the
    dpkg options keep existing configuration files without asking.
    """
    try:
        result = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"`{' '.join(command)}` took longer than {timeout_s} s") from exc
    if result.returncode != 0:
        raise InfraError(f"`{' '.join(command)}` failed: {tail(result.stdout + result.stderr, 3)}")


# --------------------------------------------------------------------------- directories


def running_as_root() -> bool:
    return os.geteuid() == 0


def server_user() -> pwd.struct_passwd | None:
    """The OS user the server runs as when we are root; ``None`` = run as ourselves."""
    if not running_as_root():
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError as exc:
        raise InfraError(
            f"running as root, but the OS user {SERVER_OS_USER!r} does not exist; PostgreSQL"
            f" refuses to run as root (create it: `useradd --system {SERVER_OS_USER}`)"
        ) from exc


def prepare_directories(paths: ClusterPaths) -> None:
    """Create the cluster's directories and hand them to the server's OS user when root."""
    for directory in (paths.root, paths.socket_directory, paths.log.parent):
        directory.mkdir(parents=True, exist_ok=True)
    paths.log.touch(exist_ok=True)
    os.chmod(paths.socket_directory, 0o700)  # the admin's trust login is socket-only
    user = server_user()
    if user is None:
        return
    for owned in (paths.root, paths.socket_directory, paths.log):
        os.chown(owned, user.pw_uid, user.pw_gid)
    if paths.data.exists():
        os.chown(paths.data, user.pw_uid, user.pw_gid)
    make_parents_traversable(paths.root, user)
    make_parents_traversable(paths.log, user)


def make_parents_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """Add o+x to every parent the server user cannot enter (e.g. a CI clone in a 0700 mktemp)."""
    for parent in path.resolve().parents:
        parent_status = parent.stat()
        mode = parent_status.st_mode
        if parent_status.st_uid == user.pw_uid or mode & stat.S_IXOTH:
            continue
        if parent_status.st_gid == user.pw_gid and mode & stat.S_IXGRP:
            continue
        os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)
        logger.warning(
            "added o+x to %s so the %s OS user can reach the PostgreSQL data directory",
            parent,
            user.pw_name,
        )


def socket_directory_for(paths: ClusterPaths) -> Path:
    """The unix socket directory: inside home unless that path is too long for a socket."""
    socket_file = paths.socket_directory / ".s.PGSQL.65535"
    if len(os.fsencode(str(socket_file))) <= SOCKET_PATH_BYTES_MAX:
        return paths.socket_directory
    raise InfraError(
        f"the PostgreSQL socket path {socket_file} is longer than {SOCKET_PATH_BYTES_MAX} bytes;"
        " choose a shorter STREAMLEDGER_HOME / --home"
    )


# --------------------------------------------------------------------------- server processes


def run_as_server_user(
    command: Sequence[str], paths: ClusterPaths, timeout_s: int
) -> subprocess.CompletedProcess[str]:
    """Run a server binary as the server's OS user, detached from our stdin/stdout/stderr.

    Output is captured through a pipe: the postmaster that ``pg_ctl start`` forks redirects
    its own output to the log file, so the pipe closes when pg_ctl exits and no caller (a CI
    job waiting on inherited pipes) is ever kept waiting by the server. A new session keeps the
    server out of the caller's process group, so a terminal's Ctrl-C does not kill it.
    """
    user = server_user()
    # A fixed environment: the binaries are absolute paths, and PG* variables from the
    # caller's shell (PGDATA, PGPORT, ...) must not change what pg_ctl does.
    environment = {
        "PATH": SERVER_PATH,
        "LC_ALL": "C",
        "TZ": "UTC",
        "HOME": user.pw_dir if user is not None else str(paths.root),
    }
    try:
        return subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=paths.root,
            env=environment,
            start_new_session=True,
            user=user.pw_uid if user is not None else None,
            group=user.pw_gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfraError(
            f"`{Path(command[0]).name} {command[1]}` did not finish within {timeout_s} s;"
            f" log: {paths.log}{log_tail_suffix(paths.log)}"
        ) from exc
    except OSError as exc:
        raise InfraError(f"cannot run {command[0]}: {exc}") from exc


def initialize_cluster(binaries: Path, paths: ClusterPaths) -> None:
    if paths.data.exists() and any(paths.data.iterdir()):
        raise InfraError(
            f"{paths.data} is not empty but holds no PostgreSQL cluster; move it away or run"
            " `streamledger infra reset`"
        )
    command = [
        str(binaries / "initdb"),
        "-D",
        str(paths.data),
        "-U",
        ADMIN_USER,
        "--encoding=UTF8",
        "--no-locale",
        "--data-checksums",  # a ledger wants silent corruption detected
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]
    result = run_as_server_user(command, paths, timeout_s=INITDB_TIMEOUT_S)
    if result.returncode != 0:
        raise InfraError(f"initdb failed for {paths.data}: {tail(result.stdout, LOG_TAIL_LINES)}")
    logger.info("initialized a PostgreSQL cluster in %s", paths.data)


def write_configuration(paths: ClusterPaths, port: int) -> None:
    """(Re)write our settings file and pg_hba.conf; include the file from postgresql.conf."""
    lines = [
        "# Written by StreamLedger (infra/postgres_server.py) on every start.",
        f"port = {port}",
        f"unix_socket_directories = '{socket_directory_for(paths)}'",
        *(f"{name} = '{value}'" for name, value in SERVER_SETTINGS),
    ]
    write_owned(paths.data / INCLUDED_CONFIG_NAME, "\n".join(lines) + "\n")
    write_owned(paths.data / "pg_hba.conf", PG_HBA)
    main_config = paths.data / "postgresql.conf"
    text = main_config.read_text(encoding="utf-8")
    if INCLUDE_LINE not in text.splitlines():
        write_owned(main_config, text.rstrip("\n") + f"\n\n{INCLUDE_LINE}\n")


def refresh_authentication(paths: ClusterPaths, port: int) -> None:
    """A running cluster whose pg_hba.conf predates a role gets the current one and reloads it
    (no restart: open sessions are not touched)."""
    hba = paths.data / "pg_hba.conf"
    try:
        if hba.read_text(encoding="utf-8") == PG_HBA:
            return
    except OSError:  # not ours to read: `infra up` as the cluster's owner rewrites it
        return
    write_owned(hba, PG_HBA)
    try:
        with connect_admin(paths, port, "postgres") as connection:
            connection.execute("SELECT pg_catalog.pg_reload_conf()")
    except psycopg.Error as exc:
        raise InfraError(f"cannot reload pg_hba.conf on PostgreSQL port {port}: {exc}") from exc


def write_owned(path: Path, text: str) -> None:
    """Write a file in the data directory, owned by the server user, private (0600)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o600)
    user = server_user()
    if user is not None:
        os.chown(temporary, user.pw_uid, user.pw_gid)
    temporary.replace(path)


def is_running(binaries: Path, paths: ClusterPaths) -> bool:
    command = [str(binaries / "pg_ctl"), "status", "-D", str(paths.data)]
    result = run_as_server_user(command, paths, timeout_s=STATUS_TIMEOUT_S)
    if result.returncode == PG_CTL_STATUS_RUNNING:
        return not clear_dead_postmaster(paths)
    if result.returncode in (PG_CTL_STATUS_NOT_RUNNING, PG_CTL_STATUS_NO_DATA_DIRECTORY):
        return False
    raise InfraError(f"`pg_ctl status` failed for {paths.data}: {one_line(result.stdout)}")


def clear_dead_postmaster(paths: ClusterPaths) -> bool:
    """Remove the lock file of a postmaster that died but was never reaped; True if removed.

    pg_ctl and the postmaster judge a lock file by ``kill(pid, 0)``, which succeeds for a
    zombie. After a ``kill -9`` on machines whose init does not reap orphans promptly (some
    container and microVM inits), the dead postmaster would block every start. A zombie never
    runs again, and the server's own shared-memory check still refuses to start while any old
    backend is attached, so removing the stale lock file is safe.
    """
    pid = postmaster_pid(paths)
    if pid is None or process_state(pid) != "Z":
        return False
    logger.warning("removing the lock files of PostgreSQL postmaster %d, which died", pid)
    for socket_lock in socket_directory_for(paths).glob(".s.PGSQL.*.lock"):
        if postmaster_pid_in(socket_lock) == pid:
            socket_lock.unlink(missing_ok=True)
    (paths.data / "postmaster.pid").unlink(missing_ok=True)
    return True


def process_state(pid: int) -> str | None:
    """The state letter of a process from /proc (e.g. "S", "Z"), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Format: "pid (command) state ...": the command may contain spaces and parentheses.
    fields = text.rpartition(")")[2].split()
    return fields[0] if fields else None


def postmaster_lines(paths: ClusterPaths) -> list[str]:
    return lock_file_lines(paths.data / "postmaster.pid")


def lock_file_lines(lock_file: Path) -> list[str]:
    try:
        return lock_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def postmaster_pid(paths: ClusterPaths) -> int | None:
    return postmaster_pid_in(paths.data / "postmaster.pid")


def postmaster_pid_in(lock_file: Path) -> int | None:
    """The PID on the first line of a postmaster lock file (data directory or socket)."""
    lines = lock_file_lines(lock_file)
    return int(lines[0]) if lines and lines[0].strip().isdigit() else None


def running_port(paths: ClusterPaths) -> int | None:
    """The port the running postmaster listens on, from its postmaster.pid."""
    lines = postmaster_lines(paths)
    if len(lines) <= POSTMASTER_PID_PORT_LINE or not lines[POSTMASTER_PID_PORT_LINE].isdigit():
        return None
    return int(lines[POSTMASTER_PID_PORT_LINE])


def check_running_port(paths: ClusterPaths, port: int) -> None:
    actual = running_port(paths)
    if actual is not None and actual != port:
        raise InfraError(
            f"the local PostgreSQL already runs on port {actual}, not {port}; run"
            " `streamledger infra down` first to change STREAMLEDGER_POSTGRES_PORT"
        )


def check_port_free(port: int) -> None:
    """Raise ``PortInUseError`` when something else listens on the loopback port."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR like the server itself: sockets in TIME_WAIT do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((LISTEN_ADDRESS, port))
    except OSError as exc:
        raise PortInUseError(
            f"port {port} ({LISTEN_ADDRESS}) is already in use by another process; choose another"
            " PostgreSQL port with STREAMLEDGER_POSTGRES_PORT or --postgres-port"
        ) from exc
    finally:
        probe.close()


def start_server(binaries: Path, paths: ClusterPaths) -> None:
    command = [
        str(binaries / "pg_ctl"),
        "start",
        "-D",
        str(paths.data),
        "-l",
        str(paths.log),
        "-w",
        "-t",
        str(START_TIMEOUT_S),
    ]
    result = run_as_server_user(command, paths, timeout_s=START_TIMEOUT_S + PROCESS_GRACE_S)
    if result.returncode != 0:
        raise InfraError(
            f"PostgreSQL did not start ({one_line(result.stdout)}); log: {paths.log}"
            f"{log_tail_suffix(paths.log)}"
        )


# --------------------------------------------------------------------------- provisioning


def provision(paths: ClusterPaths, port: int) -> None:
    """Create the database when missing, then converge roles, owner and grants (idempotent)."""
    script = PROVISION_SQL_PATH.read_bytes()
    try:
        with connect_admin(paths, port, "postgres") as connection:
            create_database(connection)
            with connection.transaction():
                connection.execute(script)  # no parameters: several statements in one go
    except psycopg.Error as exc:
        raise InfraError(
            f"cannot provision roles and database on PostgreSQL port {port}: {exc}"
        ) from exc


def connect_admin(paths: ClusterPaths, port: int, database: str) -> psycopg.Connection[TupleRow]:
    """An autocommit admin session over the unix socket; transactions are explicit."""
    return psycopg.connect(
        host=str(socket_directory_for(paths)),
        port=port,
        user=ADMIN_USER,
        dbname=database,
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
    )


def create_database(connection: psycopg.Connection[TupleRow]) -> None:
    # CREATE DATABASE cannot run inside a transaction block: autocommit.
    if connection.execute(SELECT_DATABASE_EXISTS, (DATABASE_NAME,)).fetchone() is None:
        connection.execute(sql.SQL(CREATE_DATABASE).format(database=sql.Identifier(DATABASE_NAME)))


# --------------------------------------------------------------------------- reporting


def report(settings: Settings, *, running: bool, detail: str) -> ServiceReport:
    paths = ClusterPaths.of(settings)
    return ServiceReport(
        name=SERVICE_NAME,
        running=running,
        address=f"{LISTEN_ADDRESS}:{settings.postgres_port}",
        log_path=paths.log,
        data_path=paths.data,
        detail=detail,
    )


def tail(text: str, lines: int) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def one_line(text: str) -> str:
    return tail(text, 1)


def log_tail_suffix(log: Path) -> str:
    """`` — last lines: ...`` from the server log, or nothing when it cannot be read."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return f" — last lines: {tail(text, LOG_TAIL_LINES)}"
