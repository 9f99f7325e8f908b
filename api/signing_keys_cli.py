"""``streamledger tenants grant | rotate | revoke | list``: signing keys per system and tenant.

    streamledger tenants grant PRINCIPAL TENANT
    streamledger tenants rotate PRINCIPAL TENANT [--overlap-seconds 3600]
    streamledger tenants revoke PRINCIPAL TENANT [--key-id PRINCIPAL:vN]
    streamledger tenants list TENANT

Each is a ``SigningKeyCommand`` on ``ledger.commands`` (the tenant's partition), signed with the
operator key derived from the stack's master secret, and waits for its reply (decision 0084).
``grant`` writes the key (``PRINCIPAL:v1``) to ``{home}/signing/keys/PRINCIPAL/TENANT.json``
(0600) for the upstream system's SDK; ``rotate`` grants ``PRINCIPAL:v(N+1)``, writes it there
(the previous file is kept as ``TENANT.vN.json``), then revokes ``vN`` after the overlap;
``revoke`` revokes at once. Each prints the record's position, where the change takes effect.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.signing_master import ensure_master, key_file_path
from producers.replies import OutcomeWaiter, Reply
from producers.sdk import (
    DeliveryReport,
    LedgerProducer,
    SigningKey,
    read_signing_key,
    write_signing_key,
)
from schemas.keys import command_key, partition_for
from schemas.signing_keys import (
    OPERATOR_KEY_ID,
    SigningKeyAction,
    SigningKeyCommand,
    SigningKeyState,
    decode_signing_key_state,
    encode_signing_key_command,
    is_signing_key_state,
    key_id_of,
    operator_secret,
    signature_headers,
    signing_key_state_key,
    tenant_key_secret,
    version_of,
)
from schemas.topics import BALANCES_TOPIC
from streamledger.cli_parser import EXIT_FAILURE, EXIT_OK
from streamledger.errors import SettingError
from streamledger.setting_fields import parse_int_in_range
from streamledger.settings import Settings, parse_principal_name

REPLY_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 30.0
LIST_POLL_S = 0.2
OVERLAP_SECONDS_DEFAULT = 3_600
OVERLAP_SECONDS_MAX = 366 * 86_400
ACCEPTED_KINDS = frozenset({"decided", "duplicate"})


@dataclass(frozen=True, slots=True)
class RegistryResult:
    """The reply to one signing-key command and where its record landed."""

    key_id: str
    reply: Reply
    partition: int
    offset: int

    @property
    def accepted(self) -> bool:
        return self.reply.kind in ACCEPTED_KINDS

    def line(self, what: str) -> str:
        verdict = "ok" if self.accepted else "REJECTED"
        return (
            f"{what} {self.key_id}: {verdict} ({self.reply.kind}) at ledger.commands"
            f"[{self.partition}]@{self.offset}: {self.reply.outcome.detail}"
        )


def send_registry_command(
    settings: Settings, tenant_id: str, action: SigningKeyAction, key_id: str, overlap_ms: int = 0
) -> RegistryResult:
    """Sign one ``SigningKeyCommand`` with the operator key, send it, wait for its reply."""
    master = ensure_master(settings.home)
    command = SigningKeyCommand(
        tenant_id=tenant_id,
        idempotency_key=f"signing-key/{action.value.lower()}/{key_id}/{uuid.uuid4()}",
        action=action,
        key_id=key_id,
        overlap_ms=overlap_ms,
    )
    value = encode_signing_key_command(command)
    headers = signature_headers(operator_secret(master), OPERATOR_KEY_ID, value)
    with LedgerProducer(settings) as producer:
        waiter = OutcomeWaiter(settings, producer)
        try:
            delivered: list[Future[DeliveryReport]] = []

            def submit() -> Future[DeliveryReport]:
                future = producer.submit_signed(command_key(tenant_id), value, headers)
                delivered.append(future)
                return future

            reply = waiter.request_record(
                tenant_id, command.idempotency_key, submit, timeout_s=REPLY_TIMEOUT_S
            )
        finally:
            waiter.close()
    report = delivered[0].result(timeout=0)
    return RegistryResult(key_id, reply, report.partition, report.offset)


def grant_without_waiting(
    settings: Settings, producer: LedgerProducer, principal: str, tenant_ids: list[str]
) -> dict[str, SigningKey]:
    """Queue a GRANT of ``PRINCIPAL:v1`` for each tenant on ``producer`` (no reply awaited: each
    lands on its tenant's partition before whatever the producer sends for the tenant next, so
    it is in force for those commands), write the key files, and return the keys by tenant.
    For a workload that signs from its first command (``streamledger demo``)."""
    master = ensure_master(settings.home)
    operator = operator_secret(master)
    key_id = key_id_of(principal, 1)
    keys: dict[str, SigningKey] = {}
    for tenant_id in tenant_ids:
        command = SigningKeyCommand(
            tenant_id=tenant_id,
            idempotency_key=f"signing-key/grant/{key_id}",
            action=SigningKeyAction.GRANT,
            key_id=key_id,
        )
        value = encode_signing_key_command(command)
        headers = signature_headers(operator, OPERATOR_KEY_ID, value)
        producer.send_signed(command_key(tenant_id), value, headers)
        keys[tenant_id] = SigningKey(key_id, tenant_key_secret(master, tenant_id, key_id))
        write_signing_key(
            key_file_path(settings.home, principal, tenant_id), tenant_id, keys[tenant_id]
        )
    return keys


def grant(settings: Settings, principal: str, tenant_id: str) -> RegistryResult:
    """Grant ``PRINCIPAL:v1`` for the tenant and write its key file."""
    key_id = key_id_of(principal, 1)
    result = send_registry_command(settings, tenant_id, SigningKeyAction.GRANT, key_id)
    if result.accepted:
        secret = tenant_key_secret(ensure_master(settings.home), tenant_id, key_id)
        write_signing_key(
            key_file_path(settings.home, principal, tenant_id),
            tenant_id,
            SigningKey(key_id, secret),
        )
    return result


def rotate(
    settings: Settings, principal: str, tenant_id: str, overlap_s: int
) -> tuple[RegistryResult, RegistryResult | None]:
    """Grant the next key, write it, revoke the current one after ``overlap_s``."""
    path = key_file_path(settings.home, principal, tenant_id)
    _, current = read_signing_key(path)
    version = version_of(current.key_id)
    new_key_id = key_id_of(principal, version + 1)
    granted = send_registry_command(settings, tenant_id, SigningKeyAction.GRANT, new_key_id)
    if not granted.accepted:
        return granted, None
    write_signing_key(path.with_name(f"{tenant_id}.v{version}.json"), tenant_id, current)
    secret = tenant_key_secret(ensure_master(settings.home), tenant_id, new_key_id)
    write_signing_key(path, tenant_id, SigningKey(new_key_id, secret))
    revoked = send_registry_command(
        settings, tenant_id, SigningKeyAction.REVOKE, current.key_id, overlap_s * 1_000
    )
    return granted, revoked


def revoke(
    settings: Settings, principal: str, tenant_id: str, key_id: str | None
) -> RegistryResult:
    """Revoke ``key_id`` (default: the key in the tenant's key file) from this record on."""
    if key_id is None:
        _, current = read_signing_key(key_file_path(settings.home, principal, tenant_id))
        key_id = current.key_id
    return send_registry_command(settings, tenant_id, SigningKeyAction.REVOKE, key_id)


def list_keys(settings: Settings, tenant_id: str) -> list[SigningKeyState]:
    """The tenant's registry as the processor restores it: the latest ``SigningKeyState`` per
    key on the tenant's ``ledger.balances`` partition (read_committed, to its end)."""
    topic = settings.topic(BALANCES_TOPIC)
    partition = partition_for(command_key(tenant_id), settings.partitions)
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"streamledger-signing-keys-{uuid.uuid4().hex[:8]}",  # assign only
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    prefix = signing_key_state_key(tenant_id, "")
    latest: dict[bytes, bytes | None] = {}
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=LIST_TIMEOUT_S
        )
        consumer.assign([TopicPartition(topic, partition, low)])
        deadline = time.monotonic() + LIST_TIMEOUT_S
        position = low
        while position < high and time.monotonic() < deadline:
            message = consumer.poll(LIST_POLL_S)
            if message is None or message.error() is not None:
                continue
            offset = message.offset()
            position = position + 1 if offset is None else offset + 1
            key = message.key()
            if key is not None and key.startswith(prefix):
                latest[key] = message.value()
    finally:
        consumer.close()
    return [
        decode_signing_key_state(value)
        for _, value in sorted(latest.items())
        if value is not None and is_signing_key_state(value)
    ]


def key_line(state: SigningKeyState) -> str:
    revoked = (
        "valid"
        if state.revoked_at_us is None
        else f"revoked from record time {state.revoked_at_us} us (offset {state.revoked_offset})"
    )
    return f"{state.key_id}: granted at offset {state.granted_offset}, {revoked}"


def add_signing_key_actions(actions: Any) -> None:
    """Add ``grant``, ``rotate`` and ``revoke`` to the ``streamledger tenants`` subcommands
    (``api.cli`` makes ``tenants`` for the API keys: one command for what a tenant is given)."""
    for name, help_text in (
        ("grant", "grant the signing key PRINCIPAL:v1 for TENANT and write its key file"),
        ("rotate", "grant the next signing key, keep the current one for the overlap, revoke it"),
        ("revoke", "revoke a signing key of TENANT from this command's position on"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("principal", metavar="PRINCIPAL", help="the upstream system")
        action.add_argument("tenant", metavar="TENANT", help="the tenant it acts for")
        if name == "rotate":
            action.add_argument(
                "--overlap-seconds",
                default=str(OVERLAP_SECONDS_DEFAULT),
                metavar="S",
                help=f"both keys valid this long (0..{OVERLAP_SECONDS_MAX},"
                f" default {OVERLAP_SECONDS_DEFAULT})",
            )
        if name == "revoke":
            action.add_argument("--key-id", default=None, help="default: the key file's key")
        action.set_defaults(handler=run_tenants)
    listing = actions.add_parser("list", help="the signing keys of TENANT (granted, revoked)")
    listing.add_argument("tenant", metavar="TENANT", help="the tenant")
    listing.set_defaults(handler=run_list)


def run_list(arguments: argparse.Namespace, settings: Settings) -> int:
    for state in list_keys(settings, arguments.tenant):
        print(key_line(state))
    return EXIT_OK


def run_tenants(arguments: argparse.Namespace, settings: Settings) -> int:
    principal = parse_principal_name(arguments.principal)
    tenant_id = arguments.tenant
    results: list[tuple[str, RegistryResult | None]]
    if arguments.tenants_command == "grant":
        results = [("granted", grant(settings, principal, tenant_id))]
    elif arguments.tenants_command == "rotate":
        try:
            overlap_s = parse_int_in_range(arguments.overlap_seconds, 0, OVERLAP_SECONDS_MAX)
        except ValueError as exc:
            raise SettingError(f"--overlap-seconds: {exc}") from None
        granted, revoked = rotate(settings, principal, tenant_id, overlap_s)
        results = [("granted", granted), (f"revoked after {overlap_s} s:", revoked)]
    else:
        results = [("revoked", revoke(settings, principal, tenant_id, arguments.key_id))]
    ok = True
    for what, result in results:
        if result is None:
            continue
        print(result.line(what))
        ok = ok and result.accepted
    if ok and arguments.tenants_command != "revoke":
        print(f"key file: {key_file_path(settings.home, principal, tenant_id)}")
    if not ok:
        sys.stderr.write("streamledger: the processor rejected the signing-key command\n")
        return EXIT_FAILURE
    return EXIT_OK
