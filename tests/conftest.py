"""Fixtures for the real local stack. System tests never mock Kafka or PostgreSQL and never skip.

- ``stack_settings`` (session): the TEST stack, in ``.streamledger-test`` next to ``tests/``, on
  its own ports (Kafka 29092/29093, PostgreSQL 25432, metrics 29400) so it runs beside a
  developer's demo stack. It runs ``infra.stack.up`` (idempotent); at the end it stops only the
  services this session started, because another test run may share the stack. Its home and
  ports are settings (``TEST_STACK_VARIABLES``: ``STREAMLEDGER_TEST_HOME``,
  ``STREAMLEDGER_TEST_KAFKA_PORT``, ...), so two test runs with different values share a machine;
  ``api_port()`` is the port of the API that the chaos tests' ``streamledger run`` starts.
- ``ledger_settings`` (function): the same stack with a unique topic prefix and 3 partitions, the
  ledger topics applied, deleted again afterwards, so tests never see each other's records.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from infra import kafka_broker, postgres_server, stack, topics
from streamledger.errors import StreamLedgerError
from streamledger.settings import (
    KAFKA_SECURITY_DEFAULT,
    Settings,
    child_environment,
    formatted_kafka_security,
    parse_kafka_security,
    replace,
)
from workloads.topics import delete_topics

REPO_ROOT = Path(__file__).resolve().parent.parent

# Hypothesis profiles (decision 0113). Without ``--hypothesis-profile`` each property runs the
# examples its test names (Hypothesis' 100 where it names none): the whole suite, compiled.
# ``make test`` then runs the core's tests again as the Python sources (CORE_TESTS) with
# PURE_PYTHON_RERUN_PROFILE: every property runs 1/PURE_PYTHON_RERUN_EXAMPLES_DIVISOR of its
# examples (at least PURE_PYTHON_RERUN_EXAMPLES_MIN). Same properties, same strategies; the full
# counts have just run on the compiled modules, and test_native_core compares the two
# implementations' bytes on one workload; the rerun checks that the Python sources keep every
# property, on fewer examples.
PURE_PYTHON_RERUN_PROFILE = "pure-python-rerun"
PURE_PYTHON_RERUN_EXAMPLES_DIVISOR = 4
PURE_PYTHON_RERUN_EXAMPLES_MIN = 10
# (The profile sets no count itself: a test's settings are fixed when its module is imported;
# the hook below scales each test's count, whether the test names it or not.)
#
# Neither profile has a per-example deadline nor the too_slow health check: with Hypothesis'
# defaults one example over 200 ms fails the test ("Unreliable test timings"), as does slow
# generation of the first examples, and on the loaded 2-core CI machine either can happen for
# no fault of the code (a scheduling stall, a garbage collection; the pure-Python rerun is
# slower still). A property checks its assertions; pytest-timeout bounds a hung test.
NO_DEADLINE_PROFILE = "no-deadline"
for profile in (NO_DEADLINE_PROFILE, PURE_PYTHON_RERUN_PROFILE):
    settings.register_profile(profile, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(NO_DEADLINE_PROFILE)  # --hypothesis-profile loads another one after this


def rerun_examples(max_examples: int) -> int:
    """A property's example count in the pure-Python rerun."""
    return max(PURE_PYTHON_RERUN_EXAMPLES_MIN, max_examples // PURE_PYTHON_RERUN_EXAMPLES_DIVISOR)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under PURE_PYTHON_RERUN_PROFILE every Hypothesis test runs ``rerun_examples`` of its
    ``max_examples`` (a profile does not override a count the test names). Hypothesis keeps a
    test's settings on the test function (``_hypothesis_internal_use_settings``, read when the
    test runs; there is no public setter)."""
    if settings.get_current_profile_name() != PURE_PYTHON_RERUN_PROFILE:
        return
    scaled: set[int] = set()  # a parametrized test's items share one function
    for item in items:
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None or id(test) in scaled:
            continue
        scaled.add(id(test))
        test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
            own, max_examples=rerun_examples(own.max_examples)
        )


TEST_PARTITIONS = 3
TOPIC_DELETE_TIMEOUT_S = 30.0
PORT_MIN = 1
PORT_MAX = 65_535


@dataclass(frozen=True, slots=True)
class StackDefaults:
    """Where a test stack lives when no variable says otherwise."""

    home: Path
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int
    metrics_port: int  # base of the consecutive metrics ports of a pipeline
    api_port: int


TEST_STACK_DEFAULTS = StackDefaults(
    home=REPO_ROOT / ".streamledger-test",
    kafka_port=29092,
    kafka_controller_port=29093,
    postgres_port=25432,
    metrics_port=29400,
    api_port=8080,
)
TEST_STACK_PREFIX = "STREAMLEDGER_TEST_"
# field -> variable suffix: STREAMLEDGER_TEST_KAFKA_PORT, ... (the chaos run: STREAMLEDGER_CHAOS_*)
TEST_STACK_VARIABLES = (
    "HOME",
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "POSTGRES_PORT",
    "METRICS_PORT",
    "API_PORT",
)


def stack_defaults_from(
    prefix: str, defaults: StackDefaults, environment: Mapping[str, str] = os.environ
) -> StackDefaults:
    """``defaults`` with every ``{prefix}{VARIABLE}`` that is set; a bad value names the variable.

    Only test code reads these (``STREAMLEDGER_*`` without ``TEST_`` configure the product), and
    ``run_streamledger`` does not pass them on to the commands it starts.
    """
    values: dict[str, object] = {}
    for suffix in TEST_STACK_VARIABLES:
        name = prefix + suffix
        text = environment.get(name, "").strip()
        if not text:
            continue
        field = suffix.lower()
        if field == "home":
            values[field] = Path(text).expanduser().resolve()
            continue
        if not text.isascii() or not text.isdigit() or not PORT_MIN <= int(text) <= PORT_MAX:
            raise ValueError(f"{name}={text!r}: expected a port number {PORT_MIN}..{PORT_MAX}")
        values[field] = int(text)
    return dataclasses.replace(defaults, **values)  # type: ignore[arg-type]


# The test stacks' Kafka security (decisions 0062, 0087): scram, the product's default, unless
# this says plaintext; a stack keeps the security it was formatted with, so a home formatted
# plaintext (before 0087) runs with STREAMLEDGER_TEST_KAFKA_SECURITY=plaintext or is reset.
TEST_KAFKA_SECURITY_VARIABLE = TEST_STACK_PREFIX + "KAFKA_SECURITY"


def kafka_security_of_test_stacks(environment: Mapping[str, str] = os.environ) -> str:
    text = environment.get(TEST_KAFKA_SECURITY_VARIABLE, "").strip() or KAFKA_SECURITY_DEFAULT
    try:
        return parse_kafka_security(text)
    except ValueError as exc:
        raise ValueError(f"{TEST_KAFKA_SECURITY_VARIABLE}: {exc}") from None


def security_mismatch(settings: Settings) -> str | None:
    """Why a test stack's home cannot run in ``settings.kafka_security``, naming the variable."""
    formatted = formatted_kafka_security(settings.home, settings.brokers)
    if formatted is None or formatted == settings.kafka_security:
        return None
    return (
        f"the test stack in {settings.home} was formatted for Kafka security {formatted}, not"
        f" {settings.kafka_security}: run with {TEST_KAFKA_SECURITY_VARIABLE}={formatted}, or"
        f" reset that home (`streamledger --home {settings.home} ... infra reset`)"
    )


def settings_of(defaults: StackDefaults) -> Settings:
    return Settings(
        home=defaults.home,
        kafka_port=defaults.kafka_port,
        kafka_controller_port=defaults.kafka_controller_port,
        postgres_port=defaults.postgres_port,
        metrics_port=defaults.metrics_port,
        kafka_security=kafka_security_of_test_stacks(),
    )


def shared_stack_settings() -> Settings:
    """The shared TEST stack: ``.streamledger-test``, 29092/29093, 25432, 29400 unless set."""
    return settings_of(stack_defaults_from(TEST_STACK_PREFIX, TEST_STACK_DEFAULTS))


def api_port() -> int:
    """The API port of the chaos tests' ``streamledger run`` (STREAMLEDGER_TEST_API_PORT, 8080)."""
    return stack_defaults_from(TEST_STACK_PREFIX, TEST_STACK_DEFAULTS).api_port


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    settings = shared_stack_settings()
    mismatch = security_mismatch(settings)
    if mismatch is not None:
        pytest.fail(mismatch, pytrace=False)
    kafka_was_running = kafka_broker.is_running(settings)
    postgres_was_running = postgres_server.status(settings).running
    try:
        stack.up(settings)
    except StreamLedgerError as exc:
        pytest.fail(f"the local test stack did not start: {exc}", pytrace=False)
    yield settings
    if not kafka_was_running:
        kafka_broker.stop(settings)
    if not postgres_was_running:
        postgres_server.stop(settings)


@pytest.fixture
def ledger_settings(stack_settings: Settings) -> Iterator[Settings]:
    settings = replace(
        stack_settings, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=TEST_PARTITIONS
    )
    topics.apply(settings)  # under scram also the service principals' ACLs on these topics
    yield settings
    delete_topics(settings, [*topics.declared_topic_names(settings)])


CLI_TIMEOUT_S = 300.0


def run_streamledger(
    arguments: list[str], settings: Settings | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``streamledger`` command line in a child process.

    The child gets this environment minus any STREAMLEDGER_* variable, plus the ones that
    reproduce ``settings``; its stdin is closed.
    """
    environment = child_environment(settings)
    return subprocess.run(
        [sys.executable, "-m", "streamledger.cli", *arguments],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        cwd=REPO_ROOT,
    )
