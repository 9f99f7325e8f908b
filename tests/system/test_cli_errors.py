"""Bad settings, bad arguments, taken ports and unreachable services: one line on stderr naming
what is wrong, a non-zero exit, never a traceback — the table below walks them (issue 14)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from streamledger.settings import child_environment, environment_for
from tests.conftest import REPO_ROOT, run_streamledger

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
                "--kafka-security", "plaintext",  # reachability, not credentials
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


# --------------------------------------------------------------------------- the table
#
# Each row: the command line (``{name}`` placeholders filled from ``places``), environment
# variables set for it on top of the test stack's (``None`` = unset), the exit status, and
# fragments the one line on stderr must contain. Every row must end in CLI_ROW_TIMEOUT_S.

CLI_ROW_TIMEOUT_S = 120.0  # a hang, not a pace: a loaded machine takes seconds to start a row
# The named connect timeouts are 5 s: a row takes at most this long beyond starting the command
# line (Python and every import: ~2 s on a quiet machine, over 10 s on a loaded one).
UNREACHABLE_SECONDS_MAX = 12.0
HOME = "STREAMLEDGER_HOME"
Row = tuple[str, dict[str, str], int, tuple[str, ...]]
ERROR_TABLE: dict[str, Row] = {
    "as-of past 9999": (
        "balance T A --as-of 999999999999999999",
        {},
        1,
        ("--as-of", "after 9999-12-31"),
    ),
    "as-of one past the maximum": ("balance T A --as-of 253402300800000000", {}, 1, ("--as-of",)),
    "as-of superscript": ("balance T A --as-of \u00b2", {}, 1, ("--as-of", "ASCII digits")),
    "as-of arabic-indic": ("balance T A --as-of \u0663\u0660", {}, 1, ("--as-of",)),
    "as-of not a time": ("balance T A --as-of yesterday", {}, 1, ("--as-of", "RFC 3339")),
    "after superscript": ("history T A --after \u00b2:posted", {}, 1, ("--after", "SEQUENCE")),
    "after past bigint": (
        "history T A --after 9223372036854775808:posted",
        {},
        1,
        ("--after",),
    ),
    "limit arabic-indic": ("history T A --limit \u0663", {}, 1, ("--limit", "ASCII digits")),
    "limit zero": ("history T A --limit 0", {}, 1, ("--limit", "outside 1..1000")),
    "home is a file (status)": (
        "infra status",
        {HOME: "{file}"},
        1,
        ("setting home", HOME, "is a file"),
    ),
    "home is a file (up)": ("infra up", {HOME: "{file}"}, 1, ("setting home", "is a file")),
    "home under a file (status)": (
        "infra status",
        {HOME: "{file}/below"},
        1,
        ("setting home", "which is a file"),
    ),
    "home under a file (up)": ("infra up", {HOME: "{file}/below"}, 1, ("which is a file",)),
    "home in /proc (up)": (
        "infra up",
        {HOME: "/proc/nonexistent"},
        1,
        ("setting home", "/proc/nonexistent"),
    ),
    "home empty (status)": ("infra status", {HOME: ""}, 1, ("setting home", HOME, "empty")),
    "home empty (up)": ("infra up", {HOME: ""}, 1, ("setting home", "empty")),
    "metrics host not an address": (
        "--metrics-host 999.1.1.1 infra status",
        {},
        1,
        ("metrics_host", "--metrics-host", "IPv4"),
    ),
    "metrics host from the environment": (
        "infra status",
        {"STREAMLEDGER_METRICS_HOST": "1.2.3"},
        1,
        ("STREAMLEDGER_METRICS_HOST",),
    ),
    "port in arabic-indic digits": (
        "--kafka-port \u0663\u0660\u0660\u0660 infra status",
        {},
        1,
        ("kafka_port", "ASCII digits"),
    ),
    "api port in arabic-indic digits": ("api --port \u0668\u0660", {}, 2, ("--port",)),
    "produce a missing file": (
        "produce --file {tmp}/missing.jsonl",
        {},
        1,
        ("--file", "No such file"),
    ),
    "produce a directory": ("produce --file {tmp}", {}, 1, ("--file", "is a directory")),
    "produce invalid UTF-8": (
        "produce --file {not_utf8}",
        {},
        1,
        ("line 1", "not UTF-8", "0xff"),
    ),
    "verify with Kafka unreachable": (
        "--bootstrap-servers 127.0.0.1:{closed_port} verify",
        {},
        1,
        ("cannot reach Kafka at 127.0.0.1:", "within 5 s", "STREAMLEDGER_BOOTSTRAP_SERVERS"),
    ),
    "balance with PostgreSQL unreachable": (
        "--database-url postgresql://streamledger:x@127.0.0.1:{closed_port}/streamledger"
        " balance T A",
        {},
        1,
        ("cannot reach PostgreSQL at 127.0.0.1:", "STREAMLEDGER_DATABASE_URL"),
    ),
    "api with PostgreSQL unreachable": (
        "--postgres-port {closed_port} api --port {closed_port}",
        {},
        1,
        ("cannot reach PostgreSQL at 127.0.0.1:", "streamledger_api"),
    ),
    "api with Kafka unreachable": (
        "--bootstrap-servers 127.0.0.1:{closed_port} api --port {closed_port}",
        {},
        1,
        ("cannot reach Kafka at 127.0.0.1:", "within 5 s"),
    ),
    "project --rebuild on a taken metrics port": (
        "project --rebuild --metrics-port {taken_port}",
        {},
        1,
        ("metrics port", "is in use", "--metrics-port"),
    ),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Files and ports the table's rows point at: a file, a file that is not UTF-8, a port
    nobody listens on (bound, never listening) and one that something listens on."""
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "a-file").write_text("not a directory\n")
    (tmp / "not-utf8.jsonl").write_bytes(b'\xff{"type": "OpenAccount"}\n')
    with socket.socket() as closed, socket.socket() as taken:
        closed.bind(("127.0.0.1", 0))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield {
            "tmp": str(tmp),
            "file": str(tmp / "a-file"),
            "not_utf8": str(tmp / "not-utf8.jsonl"),
            "closed_port": str(closed.getsockname()[1]),
            "taken_port": str(taken.getsockname()[1]),
        }


def run_cli_row(arguments, environment):
    """The real command line in a child, with exactly the STREAMLEDGER_* variables given."""
    child = child_environment(None)
    child.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "streamledger.cli", *arguments],
        env=child,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_ROW_TIMEOUT_S,
        check=False,
        cwd=REPO_ROOT,
    )


def start_up_seconds(environment: dict[str, str]) -> float:
    """How long starting the command line takes now: ``--version`` imports every subcommand's
    modules, then exits."""
    started = time.monotonic()
    completed = run_cli_row(["--version"], environment)
    assert completed.returncode == 0, completed.stderr
    return time.monotonic() - started


@pytest.mark.parametrize("name", list(ERROR_TABLE))
def test_every_bad_input_is_one_line_and_a_non_zero_exit(name, places, stack_settings):
    command, overrides, status, fragments = ERROR_TABLE[name]
    arguments = [part.format(**places) for part in command.split(" ")]
    environment = environment_for(stack_settings)
    environment.update({key: value.format(**places) for key, value in overrides.items()})
    started = time.monotonic()
    completed = run_cli_row(arguments, environment)
    seconds = time.monotonic() - started
    assert completed.returncode == status, (name, completed.stdout, completed.stderr)
    assert "Traceback" not in completed.stderr, (name, completed.stderr)
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, (name, completed.stderr)
    for fragment in fragments:
        assert fragment in lines[0], (name, fragment, lines[0])
    if seconds >= UNREACHABLE_SECONDS_MAX:  # a loaded machine? take off what starting takes now
        seconds -= start_up_seconds(environment)
    assert seconds < UNREACHABLE_SECONDS_MAX, (name, seconds)


def test_a_home_that_does_not_exist_yet_is_a_stopped_stack(stack_settings):
    """`infra status` on a home nobody created is not an error: nothing runs there."""
    environment = environment_for(stack_settings)
    environment[HOME] = "/proc/nonexistent"
    completed = run_cli_row(["infra", "status"], environment)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "stopped" in completed.stdout
