"""Bad settings and taken ports: one line on stderr naming the setting, never a traceback."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import run_streamledger

pytestmark = pytest.mark.system


def assert_one_line_error(completed, *fragments):
    assert completed.returncode == 1, (completed.stdout, completed.stderr)
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert lines[0].startswith("streamledger: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_port_that_is_not_a_number_names_the_setting():
    completed = run_streamledger(["--kafka-port", "abc", "infra", "status"])
    assert_one_line_error(
        completed, "kafka_port", "'abc'", "STREAMLEDGER_KAFKA_PORT", "--kafka-port"
    )


def test_an_unreachable_bootstrap_server_is_one_line(tmp_path):
    with socket.socket() as closed:  # a port nobody listens on: bind, never listen
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        completed = run_streamledger(
            [
                "--home", str(tmp_path), "--bootstrap-servers", f"127.0.0.1:{port}",
                "topics", "apply", "--timeout-s", "2",
            ]
        )  # fmt: skip
    assert_one_line_error(
        completed, f"cannot reach Kafka at 127.0.0.1:{port}", "STREAMLEDGER_BOOTSTRAP_SERVERS"
    )


def test_a_taken_kafka_port_names_the_port_and_the_setting(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        completed = run_streamledger(
            [
                "--home", str(tmp_path), "--kafka-port", str(port),
                "--kafka-controller-port", "39693", "--postgres-port", "35693",
                "--metrics-port", "39694", "infra", "up",
            ]
        )  # fmt: skip
    assert_one_line_error(completed, f"port {port}", "STREAMLEDGER_KAFKA_PORT", "--kafka-port")
    assert not (tmp_path / "postgres").exists(), (
        "PostgreSQL was touched although Kafka could not start"
    )
