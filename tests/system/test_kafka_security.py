"""Issue 21 part 1 on a real broker with SASL/SCRAM-SHA-512 and the StandardAuthorizer.

This module starts a stack of its own (``--kafka-security scram``: Kafka and PostgreSQL on ports
21640-21660, home a temporary directory) once, and stops it at the end; the shared
test stack is plaintext and is not touched. Proven here:

- a principal with credentials but no ACLs can neither produce nor consume, and the command line
  says so in one line naming the principal and the topic (no traceback);
- an upstream principal (``principals create --role upstream --read-replies``) writes
  ``ledger.commands`` and reads ``ledger.replies`` but can neither read nor write
  ``ledger.events``; revoked, it cannot connect at all;
- a subscriber granted ``ledger.events`` reads it (``events tail``) and nothing else, and writes
  nothing;
- the service principals the stack creates run the pipeline end to end: the processor as
  ``processor`` and the projection as ``projection`` turn one command into one event and one
  account row in PostgreSQL;
- a principal is let in the moment ``principals.create`` returns, and its old password is
  refused the moment ``principals.revoke`` returns, on every broker (decision 0126).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra import principals, stack
from kafka_adapter.security import (
    NotAuthorizedError,
    client_config,
    is_authorization_failure,
)
from producers.sdk import LedgerProducer
from schemas.model import OpenAccount
from schemas.topics import COMMANDS_TOPIC, EVENTS_TOPIC, OUTCOMES_TOPIC, REPLIES_TOPIC
from streamledger.settings import (
    KAFKA_SECURITY_SCRAM,
    Settings,
    child_environment,
    replace,
)
from tests.conftest import REPO_ROOT, run_streamledger

KAFKA_PORT = 21640
KAFKA_CONTROLLER_PORT = 21641
POSTGRES_PORT = 21642
METRICS_PORT = 21650  # the processor 21650, the projection 21651
PROMETHEUS_PORT = 21660
PARTITIONS = 3
CLIENT_TIMEOUT_S = 20.0
PIPELINE_TIMEOUT_S = 90.0
POLL_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 30.0
TAIL_GROUP_PREFIX = "streamledger-tail-"  # a subscriber's assign-only groups (events tail)
# create -> use at once -> revoke -> use at once, this many times: a broker applies a change a
# few milliseconds after the controller acknowledged it (decision 0126), so one round proves
# little; each round costs about 1.5 s (a third of it the broker's delay on a failed login).
# The lag is a follower's: test_kafka_cluster checks every broker's describes on three brokers.
PROMPT_ROUNDS = 3
AUTHENTICATION_FAILURES = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)


@pytest.fixture(scope="module")
def sasl_settings() -> Iterator[Settings]:
    # Not pytest's tmp_path: it keeps the last three sessions' directories, and other test runs
    # on this machine would delete this one while its servers run.
    home = Path(tempfile.mkdtemp(prefix="streamledger-sasl-"))
    settings = Settings(
        home=home,
        kafka_port=KAFKA_PORT,
        kafka_controller_port=KAFKA_CONTROLLER_PORT,
        postgres_port=POSTGRES_PORT,
        metrics_port=METRICS_PORT,
        prometheus_port=PROMETHEUS_PORT,
        partitions=PARTITIONS,
        kafka_security=KAFKA_SECURITY_SCRAM,
    )
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings)
        shutil.rmtree(home, ignore_errors=True)


def as_principal(settings: Settings, name: str) -> Settings:
    return replace(settings, kafka_principal=name)


def one_line_refusal(
    completed: subprocess.CompletedProcess[str], principal: str, topic: str
) -> None:
    assert completed.returncode != 0, completed.stdout
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert f"Kafka refused User:{principal}" in lines[0], lines[0]
    assert topic in lines[0], lines[0]


def commands_file(directory: Path, tenant: str) -> Path:
    path = directory / f"{tenant}.jsonl"
    command = {
        "type": "OpenAccount",
        "tenant_id": tenant,
        "idempotency_key": "open-1",
        "account_id": "a1",
        "currency": "EUR",
        "asset_scale": 2,
    }
    path.write_text(json.dumps(command) + "\n")
    return path


def test_a_principal_without_acls_can_neither_produce_nor_consume(
    sasl_settings: Settings, tmp_path: Path
) -> None:
    name = f"no-acls-{uuid.uuid4().hex[:6]}"
    principals.create_credentials(principals.cluster_of(sasl_settings), sasl_settings, name)
    settings = as_principal(sasl_settings, name)

    produced = run_streamledger(
        ["produce", "--file", str(commands_file(tmp_path, "acme"))], settings
    )
    one_line_refusal(produced, name, COMMANDS_TOPIC)

    consumed = run_streamledger(["events", "tail", "--from-beginning", "--exit-at-end"], settings)
    one_line_refusal(consumed, name, EVENTS_TOPIC)

    with pytest.raises(NotAuthorizedError, match=f"User:{name}"):
        LedgerProducer(settings)


def test_an_upstream_principal_writes_commands_but_cannot_read_or_write_events(
    sasl_settings: Settings, tmp_path: Path
) -> None:
    name = f"bank-{uuid.uuid4().hex[:6]}"
    created = run_streamledger(
        [
            *("principals", "create", name, "--role", "upstream", "--read-replies"),
            *("--producer-byte-rate", "1048576"),
        ],
        sasl_settings,
    )
    assert created.returncode == 0, created.stderr
    assert f"write topic {COMMANDS_TOPIC}" in created.stdout
    assert "quota producer_byte_rate=1048576,request_percentage=50" in created.stdout
    held = principals.describe_quotas(sasl_settings, name)  # what the broker holds
    assert "producer_byte_rate=1048576.0" in held and "request_percentage=50.0" in held, held
    settings = as_principal(sasl_settings, name)

    with LedgerProducer(settings) as producer:
        delivery = producer.submit(open_account("upstream-ok"))
        producer.flush(CLIENT_TIMEOUT_S)
        delivery.result(timeout=0)

    assert write_error(settings, name, EVENTS_TOPIC) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # its replies reader's group and topic are granted (the control), ledger.events is not
    assert read_error(settings, name, REPLIES_TOPIC) is None
    assert read_error(settings, name, EVENTS_TOPIC) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    tail = run_streamledger(["events", "tail", "--from-beginning", "--exit-at-end"], settings)
    one_line_refusal(tail, name, EVENTS_TOPIC)

    listed = run_streamledger(["principals", "list"], sasl_settings)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout

    revoked = run_streamledger(["principals", "revoke", name], sasl_settings)
    assert revoked.returncode == 0, revoked.stderr
    assert "3 ACLs" in revoked.stdout
    produced = run_streamledger(
        ["produce", "--file", str(commands_file(tmp_path, "acme"))], settings
    )
    assert produced.returncode != 0
    assert "Traceback" not in produced.stderr
    assert name in produced.stderr


def test_a_subscriber_reads_what_it_is_granted_and_writes_nothing(sasl_settings: Settings) -> None:
    name = f"warehouse-{uuid.uuid4().hex[:6]}"
    created = run_streamledger(
        ["principals", "create", name, "--role", "subscriber", "--read", EVENTS_TOPIC],
        sasl_settings,
    )
    assert created.returncode == 0, created.stderr
    settings = as_principal(sasl_settings, name)
    tail = run_streamledger(["events", "tail", "--from-beginning", "--exit-at-end"], settings)
    assert tail.returncode == 0, tail.stderr
    assert read_error(settings, name, EVENTS_TOPIC, TAIL_GROUP_PREFIX) is None
    refused = read_error(settings, name, OUTCOMES_TOPIC, TAIL_GROUP_PREFIX)
    assert refused == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert write_error(settings, name, COMMANDS_TOPIC) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert write_error(settings, name, EVENTS_TOPIC) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def open_account(tenant: str) -> OpenAccount:
    return OpenAccount(
        tenant_id=tenant,
        idempotency_key="open-a1",
        submitted_at_us=time.time_ns() // 1000,
        account_id="a1",
        currency="EUR",
        asset_scale=2,
    )


def write_error(settings: Settings, principal: str, topic: str) -> int | None:
    """The error code of one record written to ``topic`` as ``principal`` (None: written)."""
    outcome: list[KafkaError | None] = []
    producer = Producer(
        {**client_config(settings, principal), "message.timeout.ms": int(CLIENT_TIMEOUT_S * 1000)}
    )
    producer.produce(topic, b"not-an-event", key=b"k", on_delivery=lambda e, _m: outcome.append(e))
    producer.flush(CLIENT_TIMEOUT_S)
    assert outcome, "no delivery report"
    error = outcome[0]
    assert error is None or is_authorization_failure(error), error
    return None if error is None else error.code()


def read_error(
    settings: Settings, principal: str, topic: str, group_prefix: str = "streamledger-replies-"
) -> int | None:
    """The error code an assign-only consumer of ``topic`` as ``principal`` gets, with a group
    of ``group_prefix`` (None: it read to the end)."""
    consumer = Consumer(
        {
            **client_config(settings, principal),
            "group.id": f"{group_prefix}{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        # the broker answers a topic it refuses in the metadata (what a consumer asks first)
        metadata = consumer.list_topics(topic, timeout=CLIENT_TIMEOUT_S).topics[topic]
        if metadata.error is not None:
            assert is_authorization_failure(metadata.error), metadata.error
            return int(metadata.error.code())
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            for record in consumer.consume(10, POLL_INTERVAL_S):
                error = record.error()
                if error is None:
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    return None
                return int(error.code())
        raise AssertionError(f"{principal} neither read nor was refused {topic}")
    finally:
        consumer.close()


def start_service(settings: Settings, arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
    environment = child_environment(settings)
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "streamledger.cli", *arguments],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )


def stop_service(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def wait_for_events(settings: Settings, tenant: str, services: list[Path]) -> tuple[int, int]:
    """(events in the chain, accounts) of ``tenant`` in PostgreSQL once its account is there."""
    deadline = time.monotonic() + PIPELINE_TIMEOUT_S
    while time.monotonic() < deadline:
        with psycopg.connect(settings.database_dsn, autocommit=True) as connection:
            row = connection.execute(COUNT_PROJECTED, (tenant, tenant)).fetchone()
        if row is not None and row[1] >= 1:
            return int(row[0]), int(row[1])
        time.sleep(POLL_INTERVAL_S)
    logs = "\n".join(f"--- {path.name}\n{path.read_text()[-2000:]}" for path in services)
    raise AssertionError(f"no account of {tenant} in PostgreSQL within the deadline\n{logs}")


COUNT_PROJECTED = (
    "SELECT (SELECT count(*) FROM ledger.event_chain WHERE tenant_id = %s),"
    " (SELECT count(*) FROM ledger.accounts WHERE tenant_id = %s)"
)


def test_the_service_principals_run_the_pipeline_end_to_end(
    sasl_settings: Settings, tmp_path: Path
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    logs = [tmp_path / "processor.log", tmp_path / "projection.log"]
    processor = start_service(sasl_settings, ["process"], logs[0])
    projection = start_service(
        sasl_settings, ["project", "--metrics-port", str(METRICS_PORT + 1)], logs[1]
    )
    try:
        with LedgerProducer(sasl_settings) as producer:  # as the stack's upstream "producer"
            delivery = producer.submit(open_account(tenant))
            producer.flush(CLIENT_TIMEOUT_S)
            delivery.result(timeout=0)
        assert wait_for_events(sasl_settings, tenant, logs) == (1, 1)
    finally:
        stop_service(processor)
        stop_service(projection)
    for log in logs:
        assert "AUTHORIZATION_FAILED" not in log.read_text(), log.read_text()[-2000:]


def test_a_principal_is_let_in_when_created_and_refused_when_revoked_at_once(
    sasl_settings: Settings,
) -> None:
    topic = sasl_settings.topic(COMMANDS_TOPIC)
    brokers = principals.cluster_of(sasl_settings).brokers
    for _ in range(PROMPT_ROUNDS):
        name = f"prompt-{uuid.uuid4().hex[:6]}"
        principals.create(sasl_settings, principals.PrincipalSpec(name, principals.ROLE_UPSTREAM))
        config = client_config(sasl_settings, name)  # before revoke removes the stored password
        for broker in brokers:
            assert first_answer(config, broker.address, topic) is None, (name, broker)
        principals.revoke(sasl_settings, name)
        for broker in brokers:
            refusal = first_answer(config, broker.address, topic)
            assert refusal in AUTHENTICATION_FAILURES, (name, broker, refusal)


def first_answer(config: dict[str, str], address: str, topic: str) -> int | None:
    """What ``address`` first answers a new client of ``config`` asking for ``topic``: the code
    of the first refusal (of the login, or of the topic), or None when it described the topic."""
    errors: list[KafkaError] = []
    client = Producer({**config, "bootstrap.servers": address, "error_cb": errors.append})
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            try:
                metadata = client.list_topics(topic, timeout=POLL_INTERVAL_S)
            except KafkaException:
                metadata = None  # no answer yet: a refused login is reported through error_cb
            client.poll(0)  # serves error_cb
            refusals = [error for error in errors if is_authorization_failure(error)]
            if refusals:
                return int(refusals[0].code())
            if metadata is not None:
                error = metadata.topics[topic].error
                return None if error is None else int(error.code())
        raise AssertionError(f"{address} neither answered nor refused {config['sasl.username']}")
    finally:
        client.flush(0)
