"""The ACL table of the Kafka principals (``infra.principals.grants_for``), least privilege.

What the broker does with these rows is proven in tests/system/test_kafka_security.py; here the
table itself: who may write the processor's outputs, what an upstream system may touch, and
what ``principals create`` refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from infra.principals import (
    GROUP,
    PREFIXED,
    READ,
    ROLE_SUBSCRIBER,
    ROLE_UPSTREAM,
    ROLES,
    SERVICE_PRINCIPALS,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
    Grant,
    PrincipalSpec,
    acl_bindings,
    grants_for,
    is_not_found,
)
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config, security_config
from schemas.topics import (
    BALANCES_TOPIC,
    COMMANDS_TOPIC,
    EVENTS_TOPIC,
    OUTCOMES_TOPIC,
    REPLIES_TOPIC,
)
from streamledger.errors import SettingError
from streamledger.settings import Settings, replace

PREFIX = "t1."
PROCESSOR_OUTPUTS = (EVENTS_TOPIC, OUTCOMES_TOPIC, BALANCES_TOPIC, REPLIES_TOPIC)


def service_grants() -> dict[str, tuple[Grant, ...]]:
    return {
        name: grants_for(PrincipalSpec(name, role), PREFIX)
        for name, role in SERVICE_PRINCIPALS.items()
    }


def writes(grants: tuple[Grant, ...]) -> set[str]:
    return {grant.name for grant in grants if grant.resource == TOPIC and grant.operation == WRITE}


def reads(grants: tuple[Grant, ...]) -> set[str]:
    return {grant.name for grant in grants if grant.resource == TOPIC and grant.operation == READ}


def test_only_the_processor_writes_its_outputs_and_holds_its_transactional_ids() -> None:
    for name, grants in service_grants().items():
        written = writes(grants)
        outputs = {PREFIX + topic for topic in PROCESSOR_OUTPUTS}
        transactional = [grant for grant in grants if grant.resource == TRANSACTIONAL_ID]
        if name == "processor":
            assert outputs <= written
            assert transactional == [
                Grant(TRANSACTIONAL_ID, PREFIX + "streamledger-processor-", PREFIXED, WRITE)
            ]
        else:
            assert not outputs & written, name
            assert not any("processor" in grant.name for grant in transactional), name


def test_an_upstream_system_writes_only_ledger_commands() -> None:
    grants = grants_for(PrincipalSpec("bank-a", ROLE_UPSTREAM), PREFIX)
    assert grants == (Grant(TOPIC, PREFIX + COMMANDS_TOPIC, "literal", WRITE),)
    with_replies = grants_for(PrincipalSpec("bank-a", ROLE_UPSTREAM, read_replies=True), PREFIX)
    assert reads(with_replies) == {PREFIX + REPLIES_TOPIC}
    assert EVENTS_TOPIC not in {grant.name.removeprefix(PREFIX) for grant in with_replies}


def test_the_raw_event_log_is_read_by_the_named_services_only() -> None:
    readers = {
        name for name, grants in service_grants().items() if PREFIX + EVENTS_TOPIC in reads(grants)
    }
    assert readers == {"processor", "projection", "dispatcher", "reconciler"}


def test_a_subscriber_reads_what_it_is_granted_with_its_own_groups() -> None:
    spec = PrincipalSpec("audit", ROLE_SUBSCRIBER, read_topics=(EVENTS_TOPIC,))
    grants = grants_for(spec, PREFIX)
    assert reads(grants) == {PREFIX + EVENTS_TOPIC}
    assert not writes(grants)
    assert Grant(GROUP, PREFIX + "audit-", PREFIXED, READ) in grants


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (PrincipalSpec("admin", ROLE_UPSTREAM), "super user"),
        (PrincipalSpec("x", "root"), "--role"),
        (PrincipalSpec("x", ROLE_SUBSCRIBER), "--read"),
        (PrincipalSpec("x", ROLE_SUBSCRIBER, read_topics=(COMMANDS_TOPIC,)), "--read"),
        (PrincipalSpec("x", ROLE_UPSTREAM, read_topics=(EVENTS_TOPIC,)), "only a subscriber"),
        (PrincipalSpec("x", "processor", read_replies=True), "--read-replies"),
    ],
)
def test_a_spec_that_makes_no_sense_is_refused(spec: PrincipalSpec, message: str) -> None:
    with pytest.raises(SettingError, match=message):
        grants_for(spec, PREFIX)


def test_every_role_has_rows_and_every_row_becomes_an_allow_binding() -> None:
    for role in ROLES:
        topics = (EVENTS_TOPIC,) if role == ROLE_SUBSCRIBER else ()
        grants = grants_for(PrincipalSpec("p", role, read_topics=topics), "")
        bindings = acl_bindings("p", grants)
        assert len(bindings) == len(grants) > 0
        assert {binding.principal for binding in bindings} == {"User:p"}


def test_plaintext_clients_carry_no_credentials(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert security_config(settings, ADMIN_PRINCIPAL) == {}
    assert client_config(settings, ADMIN_PRINCIPAL) == {"bootstrap.servers": "127.0.0.1:19092"}


def test_scram_clients_authenticate_as_their_service_unless_told_otherwise(
    tmp_path: object,
) -> None:
    settings = Settings(home=tmp_path, kafka_security="scram")  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="no credentials"):
        security_config(settings, "processor")
    directory = settings.home / "kafka-principals"
    directory.mkdir()
    (directory / "processor").write_text("secret-p\n")
    (directory / "bank-a").write_text("secret-b\n")
    config = security_config(settings, "processor")
    assert config["sasl.username"] == "processor" and config["sasl.password"] == "secret-p"
    assert config["sasl.mechanisms"] == "SCRAM-SHA-512"
    overridden = security_config(replace(settings, kafka_principal="bank-a"), "processor")
    assert overridden["sasl.username"] == "bank-a" and overridden["sasl.password"] == "secret-b"


def test_missing_credentials_are_told_by_the_error_code_not_the_message() -> None:
    # the broker's message ("Attempt to describe a user credential that does not exist: x")
    # does not name the code; create/revoke wait on it (decision 0126)
    assert is_not_found(KafkaException(KafkaError(KafkaError.RESOURCE_NOT_FOUND, "no such user")))
    assert not is_not_found(KafkaException(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED)))
    assert not is_not_found(KafkaException("not a KafkaError"))
