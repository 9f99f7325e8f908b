"""The processor's limits are finite, validated, and name the setting when they are wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from processors.dead_letters import (
    HEADER_ERROR_KIND,
    HEADER_SOURCE_OFFSET,
    ORIGINAL_HEADER_PREFIX,
    dead_letter,
)
from processors.processor_settings import LIMITS, build_processor_settings
from streamledger.errors import SettingError
from streamledger.setting_fields import Declaration
from streamledger.settings import Settings

SETTINGS = Settings(home=Path("/nonexistent"), topic_prefix="p.")


def test_defaults_are_the_declared_ones_and_ids_derive_from_prefix_and_instance() -> None:
    processor_settings = build_processor_settings(SETTINGS, instance_id="7")
    for limit in LIMITS:
        assert getattr(processor_settings, limit.name) == limit.default
    assert processor_settings.group_id == "p.streamledger-processor"
    assert processor_settings.transactional_id == "p.streamledger-processor-7"
    assert processor_settings.topics.commands == "p.ledger.commands"
    assert processor_settings.metrics_port == SETTINGS.metrics_port
    assert processor_settings.metrics_host == "127.0.0.1"


def test_the_metrics_host_comes_from_the_shared_settings() -> None:
    settings = Settings(home=Path("/nonexistent"), metrics_host="0.0.0.0")
    assert build_processor_settings(settings, instance_id="0").metrics_host == "0.0.0.0"


@pytest.mark.parametrize("limit", LIMITS, ids=lambda limit: limit.name)
def test_each_limit_outside_its_range_is_refused_by_name(limit: Declaration) -> None:
    assert limit.minimum is not None and limit.maximum is not None
    flag = "--" + limit.name.replace("_", "-")
    for bad in (int(limit.minimum) - 1, int(limit.maximum) + 1):
        expected = f"setting {limit.name} ({flag}): {bad} is outside {limit.bounds()}"
        with pytest.raises(SettingError) as raised:
            build_processor_settings(SETTINGS, instance_id="a", limits={limit.name: bad})
        assert str(raised.value) == expected


def test_bad_instance_id_and_port_are_refused_by_name() -> None:
    with pytest.raises(SettingError, match="instance_id"):
        build_processor_settings(SETTINGS, instance_id="a/b")
    with pytest.raises(SettingError, match="metrics_port"):
        build_processor_settings(SETTINGS, instance_id="a", metrics_port=70000)


def test_poll_interval_must_cover_a_restore() -> None:
    with pytest.raises(SettingError, match="max_poll_interval_ms"):
        build_processor_settings(
            SETTINGS,
            instance_id="a",
            limits={"restore_timeout_s": 100, "max_poll_interval_ms": 100_000},
        )


def test_a_dead_letter_keeps_the_bytes_and_says_why_and_where() -> None:
    letter = dead_letter(
        kind="truncated",
        message="short\nbody",
        topic="p.ledger.commands",
        partition=2,
        offset=41,
        timestamp_ms=5,
        key=b"k",
        value=b"\xc3\x01",
        original_headers=[("trace", b"x"), ("empty", None)],
    )
    headers = dict(letter.headers)
    assert (letter.key, letter.value, letter.timestamp_ms) == (b"k", b"\xc3\x01", 5)
    assert headers[HEADER_ERROR_KIND] == b"truncated"
    assert headers[HEADER_SOURCE_OFFSET] == b"41"
    assert headers["dlq.error.message"] == b"short body"
    assert headers[ORIGINAL_HEADER_PREFIX + "trace"] == b"x"
    assert headers[ORIGINAL_HEADER_PREFIX + "empty"] == b""


def test_the_stall_timeout_must_exceed_the_slowest_bounded_step() -> None:
    # restore 120 s vs commit with 5 retries at 10 s each = 60 s, then an abort with its one retry
    # (10 s each): 140 s.
    with pytest.raises(SettingError, match="stall_timeout_s"):
        build_processor_settings(SETTINGS, instance_id="a", limits={"stall_timeout_s": 140})
    accepted = build_processor_settings(SETTINGS, instance_id="a", limits={"stall_timeout_s": 141})
    assert accepted.stall_timeout_s == 141


def test_the_watchdog_dumps_the_stacks_and_exits_a_stalled_process() -> None:
    stalled = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from processors.loop import Processor\n"
            "Processor._arm_watchdog(1)\n"
            "time.sleep(30)\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stalled.returncode == 1
    assert "Timeout (0:00:01)!" in stalled.stderr
    assert "time.sleep" in stalled.stderr or "<string>" in stalled.stderr
