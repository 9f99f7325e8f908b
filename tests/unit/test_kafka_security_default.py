"""Decision 0087: with no flag or variable, a new home is formatted scram; a home whose Kafka
storage was formatted keeps the mode it was formatted with, so a running stack still starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.kafka_broker import KafkaPaths, security_marker
from streamledger.settings import (
    KAFKA_SECURITY_PLAINTEXT,
    KAFKA_SECURITY_SCRAM,
    Settings,
    formatted_kafka_security,
    load_settings,
)
from tests.conftest import kafka_security_of_test_stacks, security_mismatch


def loaded(home: Path, **variables: str) -> Settings:
    return load_settings(environment={"STREAMLEDGER_HOME": str(home), **variables})


def format_as(home: Path, mode: str, *, brokers: int = 1) -> None:
    """What infra.kafka_broker.prepare leaves behind: the storage and its marker."""
    paths = KafkaPaths.of(Settings(home=home, brokers=brokers))
    (paths.data).mkdir(parents=True)
    (paths.data / "meta.properties").write_text("version=1\n")
    security_marker(paths).write_text(mode + "\n")


def test_a_new_home_is_scram(tmp_path: Path) -> None:
    assert formatted_kafka_security(tmp_path, 1) is None
    assert loaded(tmp_path).kafka_security == KAFKA_SECURITY_SCRAM


@pytest.mark.parametrize("mode", [KAFKA_SECURITY_PLAINTEXT, KAFKA_SECURITY_SCRAM])
def test_a_formatted_home_keeps_its_mode(tmp_path: Path, mode: str) -> None:
    format_as(tmp_path, mode)
    assert loaded(tmp_path).kafka_security == mode


def test_a_home_formatted_before_the_marker_is_plaintext(tmp_path: Path) -> None:
    paths = KafkaPaths.of(Settings(home=tmp_path))
    paths.data.mkdir(parents=True)
    (paths.data / "meta.properties").write_text("version=1\n")
    assert loaded(tmp_path).kafka_security == KAFKA_SECURITY_PLAINTEXT


def test_a_cluster_home_reads_its_first_node(tmp_path: Path) -> None:
    format_as(tmp_path, KAFKA_SECURITY_PLAINTEXT, brokers=3)
    assert loaded(tmp_path, STREAMLEDGER_BROKERS="3").kafka_security == KAFKA_SECURITY_PLAINTEXT
    assert loaded(tmp_path).kafka_security == KAFKA_SECURITY_SCRAM  # a single node: never formatted


def test_a_setting_wins_over_the_home(tmp_path: Path) -> None:
    format_as(tmp_path, KAFKA_SECURITY_PLAINTEXT)
    settings = loaded(tmp_path, STREAMLEDGER_KAFKA_SECURITY="scram")
    assert settings.kafka_security == KAFKA_SECURITY_SCRAM


def test_the_test_stacks_run_scram_unless_told(tmp_path: Path) -> None:
    assert kafka_security_of_test_stacks({}) == KAFKA_SECURITY_SCRAM
    told = {"STREAMLEDGER_TEST_KAFKA_SECURITY": "plaintext"}
    assert kafka_security_of_test_stacks(told) == KAFKA_SECURITY_PLAINTEXT


def test_a_test_stack_formatted_plaintext_names_the_variable(tmp_path: Path) -> None:
    format_as(tmp_path, KAFKA_SECURITY_PLAINTEXT)
    mismatch = security_mismatch(Settings(home=tmp_path, kafka_security=KAFKA_SECURITY_SCRAM))
    assert mismatch is not None
    assert "STREAMLEDGER_TEST_KAFKA_SECURITY=plaintext" in mismatch
    assert security_mismatch(Settings(home=tmp_path)) is None  # plaintext, as formatted
