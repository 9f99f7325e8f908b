"""Settings: defaults < STREAMLEDGER_* environment < flags; bad values name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamledger.errors import SettingError
from streamledger.settings import (
    Settings,
    child_environment,
    environment_for,
    host_problem,
    load_settings,
    parse_bootstrap_servers,
    parse_int_in_range,
    parse_port,
    replace,
)

WORKING_DIRECTORY = Path("/srv/ledger")


def load(environment=None, **flags):
    return load_settings(
        environment=environment or {}, flags=flags, working_directory=WORKING_DIRECTORY
    )


def test_defaults_are_the_local_stack():
    settings = load()
    assert settings.home == WORKING_DIRECTORY / ".streamledger"
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.database_dsn.endswith("@127.0.0.1:15432/streamledger")
    assert (settings.partitions, settings.replication_factor, settings.min_insync_replicas) == (
        12,
        1,
        1,
    )
    assert settings.kafka_version == "4.1.1"


def test_environment_overrides_defaults_and_flags_override_environment():
    environment = {"STREAMLEDGER_KAFKA_PORT": "20000", "STREAMLEDGER_PARTITIONS": "6"}
    assert load(environment).kafka_port == 20000
    settings = load(environment, kafka_port="21000")
    assert settings.kafka_port == 21000
    assert settings.partitions == 6


def test_bootstrap_servers_replace_the_local_address():
    settings = load(bootstrap_servers=" 10.0.0.1:9092 , 10.0.0.2:9092 ")
    assert settings.kafka_bootstrap == "10.0.0.1:9092,10.0.0.2:9092"


def test_metrics_host_is_loopback_unless_a_container_asks_for_every_address():
    assert load().metrics_host == "127.0.0.1"
    assert load({"STREAMLEDGER_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
    assert load({"STREAMLEDGER_METRICS_HOST": "0.0.0.0"}, metrics_host="::1").metrics_host == "::1"
    settings = load(metrics_host=" 0.0.0.0 ")
    assert settings.metrics_host == "0.0.0.0"
    assert load(environment_for(settings)) == settings


def test_topic_names_carry_the_prefix():
    assert load(topic_prefix="t1.").topic("ledger.events") == "t1.ledger.events"


@pytest.mark.parametrize(
    ("flags", "environment", "fragments"),
    [
        ({"kafka_port": "abc"}, {}, ["kafka_port", "--kafka-port", "'abc' is not a whole number"]),
        ({}, {"STREAMLEDGER_KAFKA_PORT": "70000"}, ["STREAMLEDGER_KAFKA_PORT", "outside 1..65535"]),
        ({"partitions": "0"}, {}, ["partitions", "STREAMLEDGER_PARTITIONS"]),
        ({"bootstrap_servers": "nohostport"}, {}, ["bootstrap_servers", "not host:port"]),
        ({"database_url": "mysql://x"}, {}, ["database_url", "postgresql://"]),
        ({"topic_prefix": "bad prefix!"}, {}, ["topic_prefix", "--topic-prefix"]),
        ({"kafka_version": "3.9.0"}, {}, ["kafka_version", "Kafka 4.x"]),
        ({"kafka_heap_mb": "64"}, {}, ["kafka_heap_mb", "outside 128..16384"]),
        ({"metrics_host": "bad host!"}, {}, ["metrics_host", "--metrics-host", "not a host"]),
        ({}, {"STREAMLEDGER_METRICS_HOST": ""}, ["STREAMLEDGER_METRICS_HOST", "not a host"]),
    ],
)
def test_a_bad_value_names_the_setting_in_one_line(flags, environment, fragments):
    with pytest.raises(SettingError) as raised:
        load(environment, **flags)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_two_services_on_one_port_is_refused():
    with pytest.raises(SettingError, match="postgres_port: port 19092 is also kafka_port"):
        load(postgres_port="19092")


def test_min_insync_replicas_above_replication_factor_is_refused():
    with pytest.raises(SettingError, match="min_insync_replicas"):
        load(min_insync_replicas="2")
    assert load(replication_factor="3", min_insync_replicas="2").min_insync_replicas == 2


def test_replace_checks_consistency_too():
    settings = load()
    assert replace(settings, partitions=3).partitions == 3
    with pytest.raises(SettingError):
        replace(settings, postgres_port=settings.kafka_port)


def test_environment_for_reproduces_the_settings_in_a_child():
    settings = load(kafka_port="29092", topic_prefix="t0.", partitions="3")
    assert load(environment_for(settings)) == settings


def test_a_child_sees_exactly_the_settings_and_keeps_the_core_choice(monkeypatch):
    monkeypatch.setenv("STREAMLEDGER_KAFKA_PORT", "20000")  # the parent's: not the child's
    monkeypatch.setenv("STREAMLEDGER_TEST_HOME", "/tmp/elsewhere")  # a test switch: dropped
    monkeypatch.setenv("STREAMLEDGER_PURE_PYTHON", "1")  # which core runs: every process alike
    monkeypatch.setenv("LANG", "C.UTF-8")
    settings = load(kafka_port="29092", topic_prefix="t0.")
    environment = child_environment(settings)
    assert environment["STREAMLEDGER_KAFKA_PORT"] == "29092"
    assert "STREAMLEDGER_TEST_HOME" not in environment
    assert environment["STREAMLEDGER_PURE_PYTHON"] == "1"
    assert environment["LANG"] == "C.UTF-8"
    assert load(environment) == settings
    bare = child_environment(None)
    assert [key for key in bare if key.startswith("STREAMLEDGER_")] == ["STREAMLEDGER_PURE_PYTHON"]


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        load().kafka_port = 1  # type: ignore[misc]


@given(st.integers(min_value=1, max_value=65535))
def test_every_valid_port_parses(port):
    assert parse_port(f" {port} ") == port


@given(st.integers().filter(lambda port: not 1 <= port <= 65535))
def test_every_invalid_port_is_refused(port):
    with pytest.raises(ValueError, match=r"outside|not a whole number"):
        parse_port(str(port))


@pytest.mark.parametrize(
    "text", ["\u0663\u0660", "\uff13\uff10", "1_000", "+80", "\u00b2", "0x50", "8 0"]
)
def test_only_ascii_digits_are_numbers(text):
    """int() reads other scripts' digits and underscores; a setting must not."""
    with pytest.raises(ValueError, match="not a whole number"):
        parse_int_in_range(text, 0, 10**9)


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("127.0.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("localhost", True),
        ("kafka", True),
        ("kafka_1", True),
        ("broker-1.example.com", True),
        ("example.com.", True),
        ("999.1.1.1", False),
        ("256.0.0.1", False),
        ("10.1.1", False),
        ("1.2.3.4.5", False),
        ("01.1.1.1", False),
        ("::zz", False),
        ("-leading.example", False),
        ("a..b", False),
        ("bad host", False),
        ("\u0663.\u0661.\u0661.\u0661", False),
        ("x" * 64, False),
        ("", False),
    ],
)
def test_a_host_is_an_ip_literal_or_a_host_name(host, valid):
    assert (host_problem(host) is None) == valid, host_problem(host)


def test_bootstrap_servers_check_each_host():
    assert parse_bootstrap_servers("[::1]:9092,kafka:9092") == "[::1]:9092,kafka:9092"
    with pytest.raises(ValueError, match=r"999\.1\.1\.1"):
        parse_bootstrap_servers("999.1.1.1:9092")


def test_an_empty_home_is_an_error_not_the_current_directory():
    with pytest.raises(SettingError, match=r"setting home \(STREAMLEDGER_HOME\): empty"):
        load({"STREAMLEDGER_HOME": ""})
    with pytest.raises(SettingError, match=r"setting home \(--home\): empty"):
        load(home=" ")


def test_a_home_that_is_or_is_under_a_file_is_refused(tmp_path):
    file = tmp_path / "a-file"
    file.write_text("")
    with pytest.raises(SettingError, match="is a file, not a directory"):
        load({"STREAMLEDGER_HOME": str(file)})
    with pytest.raises(SettingError, match=f"is under {file}, which is a file"):
        load(home=str(file / "below"))
    assert load(home=str(tmp_path / "not-yet" / "home")).home == tmp_path / "not-yet" / "home"


def test_bootstrap_servers_need_a_port():
    with pytest.raises(ValueError, match="not a whole number"):
        parse_bootstrap_servers("host:port")


def test_settings_can_be_built_directly_for_tests():
    settings = Settings(home=Path("/tmp/x"), kafka_port=29092)
    assert settings.kafka_bootstrap == "127.0.0.1:29092"


def test_a_default_home_that_is_a_file_names_the_setting(tmp_path):
    (tmp_path / ".streamledger").write_text("")
    with pytest.raises(SettingError, match=r"setting home \(default ./.streamledger\)"):
        load_settings(environment={}, flags={}, working_directory=tmp_path)
