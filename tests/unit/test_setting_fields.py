"""One settings mechanism (decision 0035): each setting declared once on its field; the flag,
the help, the environment variable and the check derive from it, and no way of building a
settings object skips the check."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from api.settings import ApiSettings
from pipeline.supervisor import RunSettings
from processors.processor_settings import ProcessorSettings, build_processor_settings
from producers.loadgen import LoadPlan
from projections.settings import ProjectionSettings
from streamledger.cli_parser import decimal_number
from streamledger.errors import SettingError
from streamledger.setting_fields import (
    Declaration,
    declaration_of,
    declarations,
    parse_decimal,
)
from streamledger.settings import Settings, load_settings

HOME = Path("/nonexistent")
PROCESSOR = build_processor_settings(Settings(home=HOME), instance_id="0")
API = ApiSettings(reader_dsn="postgresql://x")

# One valid object of each settings class, built directly.
BUILT: dict[type, Any] = {
    Settings: Settings(home=HOME),
    ProcessorSettings: PROCESSOR,
    ApiSettings: API,
    ProjectionSettings: ProjectionSettings(),
    RunSettings: RunSettings(),
    LoadPlan: LoadPlan(),
}
LIMITS = [
    (settings_class, declaration)
    for settings_class in BUILT
    for declaration in declarations(settings_class)
    if declaration.is_limit
]


def limit_id(case: tuple[type, Declaration]) -> str:
    return f"{case[0].__name__}.{case[1].name}"


@pytest.mark.parametrize("case", LIMITS, ids=[limit_id(case) for case in LIMITS])
def test_replace_outside_the_bounds_is_refused_naming_setting_flag_and_bounds(
    case: tuple[type, Declaration],
) -> None:
    settings_class, declaration = case
    assert declaration.minimum is not None and declaration.maximum is not None
    for bad in (declaration.minimum - 1, declaration.maximum + 1):
        value = bad if declaration.decimal else int(bad)
        expected = (
            f"setting {declaration.name} ({declaration.flag}):"
            f" {declaration.shown(value)} is outside {declaration.bounds()}"
        )
        with pytest.raises(SettingError) as raised:
            dataclasses.replace(BUILT[settings_class], **{declaration.name: value})
        assert str(raised.value) == expected


@pytest.mark.parametrize("case", LIMITS, ids=[limit_id(case) for case in LIMITS])
def test_a_limit_is_a_number_not_text_or_a_bool(case: tuple[type, Declaration]) -> None:
    settings_class, declaration = case
    for bad in ("5", True, None, float("nan")):
        with pytest.raises(SettingError, match=f"setting {declaration.name} "):
            dataclasses.replace(BUILT[settings_class], **{declaration.name: bad})
    if not declaration.decimal:
        with pytest.raises(SettingError, match="is not a whole number"):
            dataclasses.replace(BUILT[settings_class], **{declaration.name: 1.5})


def test_building_directly_checks_the_text_settings_and_the_relations_too() -> None:
    with pytest.raises(SettingError, match=r"setting instance_id \(--instance-id\)"):
        dataclasses.replace(PROCESSOR, instance_id="a/b")
    with pytest.raises(SettingError, match=r"setting max_poll_interval_ms"):
        dataclasses.replace(PROCESSOR, restore_timeout_s=3_600)
    with pytest.raises(SettingError, match=r"setting host \(--host\)"):
        dataclasses.replace(API, host="bad host")
    with pytest.raises(SettingError, match=r"setting topic_prefix \(--topic-prefix\)"):
        Settings(home=HOME, topic_prefix="bad prefix!")
    with pytest.raises(SettingError, match="postgres_port: port 19092 is also kafka_port"):
        Settings(home=HOME, postgres_port=19092)
    with pytest.raises(SettingError, match=r"setting consumer_group"):
        ProjectionSettings(consumer_group="")
    with pytest.raises(SettingError, match=r"backoff_s_min \(--backoff-s-min\)"):
        RunSettings(backoff_s_min=2.0, backoff_s_max=1.0)


def test_every_field_default_is_valid_and_flags_follow_the_field_names() -> None:
    renamed = {"accounts_per_tenant": "--accounts"}  # kept for compatibility
    for settings_class in BUILT:
        for declaration in declarations(settings_class):
            expected = renamed.get(declaration.name, "--" + declaration.name.replace("_", "-"))
            assert declaration.flag == expected
            if declaration.has_default:
                assert declaration.problem(declaration.default) is None, declaration.name


def test_environment_backed_settings_read_their_variable() -> None:
    backed = [d for d in declarations(Settings) if d.environment]
    assert {d.name for d in backed} == {field.name for field in dataclasses.fields(Settings)}
    settings = load_settings(
        environment={"STREAMLEDGER_KAFKA_HEAP_MB": "1024", "STREAMLEDGER_HOME": "/srv"},
        flags={},
    )
    assert (settings.kafka_heap_mb, settings.home) == (1024, Path("/srv"))
    processor_names = {d.name for d in declarations(ProcessorSettings) if d.environment}
    assert processor_names == set()  # the processor's limits are flags only


def test_help_says_what_unit_bounds_default_and_variable() -> None:
    kafka_port = declaration_of(Settings, "kafka_port").help_text()
    assert kafka_port == (
        "the local Kafka broker (port, 1..65535; default 19092; env STREAMLEDGER_KAFKA_PORT)"
    )
    interval = declaration_of(ProcessorSettings, "batch_interval_ms").help_text()
    assert "(ms, 1..60000; default 100)" in interval
    stall_kill = declaration_of(RunSettings, "stall_kill_after_s").help_text()
    assert "(s, 0..600; default 10)" in stall_kill
    with pytest.raises(KeyError):
        declaration_of(Settings, "nothing")


@pytest.mark.parametrize("text", ["nan", "inf", "1e3", "-1", "+1", "\u0663", "1_0", ".5", "1."])
def test_decimal_numbers_are_ascii_digits_with_an_optional_fraction(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal number"):
        parse_decimal(text)
    with pytest.raises(Exception, match="not a decimal number"):
        decimal_number(text)


def test_decimal_numbers_read() -> None:
    assert parse_decimal(" 0.25 ") == 0.25
    assert parse_decimal("40") == 40.0
