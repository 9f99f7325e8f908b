"""The local PostgreSQL module's logic that needs no server: paths, ports, permissions."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from pathlib import Path

import pytest

from infra import postgres_server
from infra.postgres_server import ClusterPaths
from streamledger.errors import InfraError, PortInUseError
from streamledger.settings import Settings


def test_cluster_paths_live_under_home(tmp_path: Path) -> None:
    paths = ClusterPaths.of(Settings(home=tmp_path))
    assert paths.data == tmp_path / "postgres" / "data"
    assert paths.socket_directory.parent == tmp_path / "postgres"
    assert paths.log == tmp_path / "logs" / "postgresql.log"


def test_a_taken_port_names_the_port_and_the_setting() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUseError) as raised:
            postgres_server.check_port_free(port)
    message = str(raised.value)
    assert f"port {port}" in message
    assert "STREAMLEDGER_POSTGRES_PORT" in message
    assert "--postgres-port" in message
    assert "\n" not in message


def test_a_free_port_passes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    postgres_server.check_port_free(port)


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    deep_home = tmp_path / ("h" * 120)
    with pytest.raises(InfraError, match="STREAMLEDGER_HOME"):
        postgres_server.socket_directory_for(ClusterPaths.of(Settings(home=deep_home)))


def test_private_parents_become_traversable_for_the_server_user(tmp_path: Path) -> None:
    private = tmp_path / "clone"  # like a CI checkout in a 0700 mktemp directory
    data = private / "repo" / ".streamledger" / "postgres"
    data.mkdir(parents=True)
    private.chmod(0o700)
    stranger = pwd.struct_passwd(("stranger", "x", 65530, 65530, "", "/", "/bin/false"))
    postgres_server.make_parents_traversable(data, stranger)
    assert stat.S_IMODE(private.stat().st_mode) == 0o701
    assert os.access(private, os.R_OK)  # only o+x was added, nothing else changed


def test_the_log_tail_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_text("".join(f"line {number}\n" for number in range(50)))
    suffix = postgres_server.log_tail_suffix(log)
    assert "\n" not in suffix
    assert suffix.endswith("line 49")
    assert "line 44" not in suffix


def test_pg_hba_trusts_only_the_admin_on_the_socket() -> None:
    rules = [
        line.split()
        for line in postgres_server.PG_HBA.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["local", "all", "postgres", "trust"] in rules
    assert all(rule[-1] == "scram-sha-256" for rule in rules if rule[0] == "host")
    assert all(rule[0] in ("local", "host") for rule in rules)
    assert all("0.0.0.0" not in " ".join(rule) for rule in rules)


def test_fsync_stays_on() -> None:
    assert dict(postgres_server.SERVER_SETTINGS)["fsync"] == "on"


def test_process_state_reads_proc() -> None:
    assert postgres_server.process_state(os.getpid()) in ("R", "S")
    assert postgres_server.process_state(2**22 + 12345) is None  # above Linux's pid_max


def test_postmaster_pid_is_the_lock_files_first_line(tmp_path: Path) -> None:
    lock = tmp_path / "postmaster.pid"
    lock.write_text("4242\n/data\n1700000000\n25432\n")
    assert postgres_server.postmaster_pid_in(lock) == 4242
    assert postgres_server.postmaster_pid_in(tmp_path / "missing") is None
