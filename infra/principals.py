"""Kafka principals and their least-privilege ACLs, as code (decisions 0062, 0063).

A principal is a SCRAM-SHA-512 user with the ACLs of one role. What each role may do is a pure
function of the role and the topic prefix (``grants_for``), so the table in
docs/security.md, the broker and the tests all read the same rows:

- processor: read ``ledger.commands`` and its own outputs (restore); write ``ledger.events``,
  ``outcomes``, ``balances``, ``notifications``, ``replies``, ``commands.dlq`` and
  ``ledger.commands`` (expiry ticks); its groups and transactional ids (prefix
  ``streamledger-processor``);
- projection: read ``ledger.events``, ``ledger.notifications`` (verify); groups
  ``streamledger-projection*``, ``streamledger-verify*``;
- api: write ``ledger.commands`` (idempotent); read ``ledger.outcomes``; its assign-only groups
  (``streamledger-api-*``);
- dispatcher: read ``ledger.events``, ``ledger.notifications``; group ``streamledger-notify*``;
- reconciler: read ``ledger.events``, ``ledger.balances``, ``ledger.statements``,
  ``ledger.reconciliation``; write ``ledger.statements``, ``ledger.reconciliation``; group and
  transactional ids ``streamledger-reconciler*``; the importer's transactional ids
  ``streamledger-statements-import/*``; its assign-only readers' groups ``streamledger-reader-*``;
- upstream: write ``ledger.commands`` (idempotent) only; with ``read_replies`` also read
  ``ledger.replies`` with the assign-only groups ``streamledger-replies-*``;
- subscriber: read the topics it is granted, with its own group prefix and the assign-only
  groups of ``events tail`` (``streamledger-tail-*``).

Topic names carry the stack's topic prefix; groups and transactional ids of the services too
(the API's and the replies reader's assign-only groups do not, so theirs are matched as they are).
The super user ``admin`` (topics, ACLs, credentials, the test harness) and the quorum's
``controller`` have no ACLs: ``super.users`` (``infra.kafka_broker.sasl_properties``).

Credentials are created and removed through the Admin API (``alter_user_scram_credentials``),
ACLs too (``create_acls`` / ``delete_acls``). Client quotas have no Admin API call in
confluent-kafka (no ``alter_client_quotas``), so ``set_quotas`` runs Kafka's own
``kafka-configs`` (``kafka.admin.ConfigCommand``) from the local stack's jars.

The controller acknowledges a credential or ACL change once it is in the metadata log; each
broker applies it from there a moment later. ``create`` and ``revoke`` return only once every
broker shows the change (decision 0126), so a script that connects as the principal at once
is let in, and a revoked one is refused at once.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from infra import kafka_broker
from kafka_adapter.admin import (
    ADMIN_REQUEST_TIMEOUT_S,
    admin_client,
    cluster_metadata,
    kafka_error_text,
)
from kafka_adapter.security import (
    ADMIN_PRINCIPAL,
    API_PRINCIPAL,
    CONTROLLER_PRINCIPAL,
    DISPATCHER_PRINCIPAL,
    PROCESSOR_PRINCIPAL,
    PRODUCER_PRINCIPAL,
    PROJECTION_PRINCIPAL,
    RECONCILER_PRINCIPAL,
    SCRAM_ITERATIONS,
    client_config,
    ensure_password,
    is_scram,
    remove_password,
)
from schemas.topics import (
    BALANCES_TOPIC,
    COMMANDS_DLQ_TOPIC,
    COMMANDS_TOPIC,
    EVENTS_TOPIC,
    NOTIFICATIONS_TOPIC,
    OUTCOMES_TOPIC,
    REPLIES_TOPIC,
)
from streamledger.errors import InfraError, SettingError
from streamledger.settings import Settings, replace

ROLE_PROCESSOR: Final = "processor"
ROLE_PROJECTION: Final = "projection"
ROLE_API: Final = "api"
ROLE_DISPATCHER: Final = "dispatcher"
ROLE_RECONCILER: Final = "reconciler"
ROLE_UPSTREAM: Final = "upstream"
ROLE_SUBSCRIBER: Final = "subscriber"
ROLES: Final = (
    ROLE_PROCESSOR,
    ROLE_PROJECTION,
    ROLE_API,
    ROLE_DISPATCHER,
    ROLE_RECONCILER,
    ROLE_UPSTREAM,
    ROLE_SUBSCRIBER,
)
# The stack's own services: principal -> role. ``infra up`` under scram creates each.
SERVICE_PRINCIPALS: Final[Mapping[str, str]] = {
    PROCESSOR_PRINCIPAL: ROLE_PROCESSOR,
    PROJECTION_PRINCIPAL: ROLE_PROJECTION,
    API_PRINCIPAL: ROLE_API,
    DISPATCHER_PRINCIPAL: ROLE_DISPATCHER,
    RECONCILER_PRINCIPAL: ROLE_RECONCILER,
    PRODUCER_PRINCIPAL: ROLE_UPSTREAM,
}
RESERVED_PRINCIPALS: Final = frozenset({ADMIN_PRINCIPAL, CONTROLLER_PRINCIPAL})
# The reconciliation's own topics (reconciliation.topics; named here so infra does not import
# that package): bank statements imported, and the matcher's results.
STATEMENTS_TOPIC: Final = "ledger.statements"
RECONCILIATION_TOPIC: Final = "ledger.reconciliation"
# What a subscriber may be granted: the ledger's output topics, never the commands.
SUBSCRIBABLE_TOPICS: Final = (
    *(EVENTS_TOPIC, OUTCOMES_TOPIC, BALANCES_TOPIC, NOTIFICATIONS_TOPIC, REPLIES_TOPIC),
)

# Broker client quotas of an upstream principal (decision 0063): bytes/s it may produce and the
# share of one broker thread's time its requests may use (100 = one thread).
PRODUCER_BYTE_RATE_DEFAULT: Final = 4 * 1024 * 1024
PRODUCER_BYTE_RATE_RANGE: Final = (1024, 1024 * 1024 * 1024)
REQUEST_PERCENTAGE_DEFAULT: Final = 50
REQUEST_PERCENTAGE_RANGE: Final = (1, 1000)
QUOTA_TOOL_TIMEOUT_S: Final = 120.0
QUOTA_TOOL_HEAP_MB: Final = 256
# How long create/revoke wait for every broker to show a change the controller acknowledged
# (decision 0126: all three brokers of a local cluster within 2-11 ms median, 0.2 s at most
# under load), and how often they look.
CHANGE_VISIBLE_TIMEOUT_S: Final = 30.0
CHANGE_VISIBLE_POLL_S: Final = 0.01
# Metadata requests until the cluster names a given broker as "controller": librdkafka sends
# DescribeAcls there, and a KRaft broker names a random live broker each time.
CONTROLLER_PICKS_MAX: Final = 200
# "any" in an ACL filter (confluent-kafka types the field as str, librdkafka takes None).
ANY_NAME: Final = cast(str, None)

TOPIC: Final = "topic"
GROUP: Final = "group"
TRANSACTIONAL_ID: Final = "transactional_id"
LITERAL: Final = "literal"
PREFIXED: Final = "prefixed"
READ: Final = "read"
WRITE: Final = "write"
RESOURCE_TYPES: Final[Mapping[str, ResourceType]] = {
    TOPIC: ResourceType.TOPIC,
    GROUP: ResourceType.GROUP,
    TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}
PATTERN_TYPES: Final[Mapping[str, ResourcePatternType]] = {
    LITERAL: ResourcePatternType.LITERAL,
    PREFIXED: ResourcePatternType.PREFIXED,
}
OPERATIONS: Final[Mapping[str, AclOperation]] = {
    READ: AclOperation.READ,
    WRITE: AclOperation.WRITE,
}


@dataclass(frozen=True, slots=True)
class Grant:
    """One ACL row: ``operation`` on the resource ``name`` (matched ``pattern``). Read and write
    imply describe in Kafka, so no row grants describe alone."""

    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ or WRITE

    def line(self) -> str:
        star = "*" if self.pattern == PREFIXED else ""
        return f"{self.operation:<5} {self.resource} {self.name}{star}"


@dataclass(frozen=True, slots=True)
class PrincipalSpec:
    """What ``principals create`` makes: a name, a role and that role's options."""

    name: str
    role: str
    read_topics: tuple[str, ...] = ()  # subscriber: topics without the prefix
    read_replies: bool = False  # upstream: may also read ledger.replies
    group_prefix: str = ""  # subscriber: its groups (default: prefix + name + "-")


# --- the table (pure) --------------------------------------------------------------------------


def grants_for(spec: PrincipalSpec, topic_prefix: str) -> tuple[Grant, ...]:
    """The ACL rows of ``spec`` on a stack whose topics start with ``topic_prefix``."""
    check_spec(spec)

    def topic(operation: str, name: str) -> Grant:
        return Grant(TOPIC, topic_prefix + name, LITERAL, operation)

    def group(name: str, *, prefixed_by_stack: bool = True) -> Grant:
        return Grant(GROUP, (topic_prefix if prefixed_by_stack else "") + name, PREFIXED, READ)

    if spec.role == ROLE_PROCESSOR:
        outputs = (
            *(EVENTS_TOPIC, OUTCOMES_TOPIC, BALANCES_TOPIC, NOTIFICATIONS_TOPIC),
            *(REPLIES_TOPIC, COMMANDS_DLQ_TOPIC),
        )
        restored = (EVENTS_TOPIC, OUTCOMES_TOPIC, BALANCES_TOPIC, NOTIFICATIONS_TOPIC)
        return (
            *(topic(READ, name) for name in (COMMANDS_TOPIC, *restored)),
            *(topic(WRITE, name) for name in outputs),
            topic(WRITE, COMMANDS_TOPIC),  # expiry ticks (processors.ticks)
            group("streamledger-processor"),
            Grant(TRANSACTIONAL_ID, topic_prefix + "streamledger-processor-", PREFIXED, WRITE),
        )
    if spec.role == ROLE_PROJECTION:
        return (
            topic(READ, EVENTS_TOPIC),
            topic(READ, NOTIFICATIONS_TOPIC),  # verify checks the monitors' notifications
            group("streamledger-projection"),
            group("streamledger-verify"),
        )
    if spec.role == ROLE_API:
        return (
            topic(WRITE, COMMANDS_TOPIC),
            topic(READ, OUTCOMES_TOPIC),
            topic(READ, REPLIES_TOPIC),  # RATE_LIMITED replies -> 429 (decision 0083)
            group("streamledger-api-", prefixed_by_stack=False),
        )
    if spec.role == ROLE_DISPATCHER:
        return (
            topic(READ, EVENTS_TOPIC),
            topic(READ, NOTIFICATIONS_TOPIC),
            group("streamledger-notify"),
        )
    if spec.role == ROLE_RECONCILER:
        return (
            *(topic(READ, name) for name in (EVENTS_TOPIC, BALANCES_TOPIC)),
            # its own topics both ways: the reconciliation projection and `reconcile report`
            # read back the statements and the results it wrote
            *(topic(READ, name) for name in (STATEMENTS_TOPIC, RECONCILIATION_TOPIC)),
            *(topic(WRITE, name) for name in (STATEMENTS_TOPIC, RECONCILIATION_TOPIC)),
            group("streamledger-reconciler"),
            group("streamledger-reader-", prefixed_by_stack=False),  # its assign-only readers
            Grant(TRANSACTIONAL_ID, topic_prefix + "streamledger-reconciler-", PREFIXED, WRITE),
            Grant(TRANSACTIONAL_ID, "streamledger-statements-import/", PREFIXED, WRITE),
        )
    return client_grants(spec, topic_prefix)


def client_grants(spec: PrincipalSpec, topic_prefix: str) -> tuple[Grant, ...]:
    """Upstream systems and downstream subscribers: the principals ``principals create`` adds."""
    if spec.role == ROLE_UPSTREAM:
        grants = [Grant(TOPIC, topic_prefix + COMMANDS_TOPIC, LITERAL, WRITE)]
        if spec.read_replies:
            grants.append(Grant(TOPIC, topic_prefix + REPLIES_TOPIC, LITERAL, READ))
            grants.append(Grant(GROUP, "streamledger-replies-", PREFIXED, READ))
        return tuple(grants)
    assert spec.role == ROLE_SUBSCRIBER, spec.role
    group_prefix = spec.group_prefix or f"{topic_prefix}{spec.name}-"
    return (
        *(Grant(TOPIC, topic_prefix + name, LITERAL, READ) for name in spec.read_topics),
        Grant(GROUP, group_prefix, PREFIXED, READ),
        # ``streamledger events tail`` (assign only, never commits): a group the coordinator
        # is asked about all the same
        Grant(GROUP, "streamledger-tail-", PREFIXED, READ),
    )


def check_spec(spec: PrincipalSpec) -> None:
    """``SettingError`` for a spec that makes no sense (names the option)."""
    if spec.name in RESERVED_PRINCIPALS:
        raise SettingError(f"principal {spec.name!r} is the stack's own super user; choose another")
    if spec.role not in ROLES:
        raise SettingError(f"--role: {spec.role!r} is not one of {', '.join(ROLES)}")
    if spec.role == ROLE_SUBSCRIBER:
        if not spec.read_topics:
            raise SettingError("--read: a subscriber needs at least one topic to read")
        unknown = sorted(set(spec.read_topics) - set(SUBSCRIBABLE_TOPICS))
        if unknown:
            raise SettingError(
                f"--read: {', '.join(unknown)} not among {', '.join(SUBSCRIBABLE_TOPICS)}"
            )
    elif spec.read_topics or spec.group_prefix:
        raise SettingError("--read / --group-prefix: only a subscriber is granted topics to read")
    if spec.read_replies and spec.role != ROLE_UPSTREAM:
        raise SettingError("--read-replies: only an upstream principal reads ledger.replies")


def acl_bindings(principal: str, grants: Sequence[Grant]) -> list[AclBinding]:
    return [
        AclBinding(
            RESOURCE_TYPES[grant.resource],
            grant.name,
            PATTERN_TYPES[grant.pattern],
            f"User:{principal}",
            "*",
            OPERATIONS[grant.operation],
            AclPermissionType.ALLOW,
        )
        for grant in grants
    ]


# --- the broker --------------------------------------------------------------------------------


def require_scram(settings: Settings) -> None:
    if not is_scram(settings):
        raise SettingError(
            "principals need a stack with authentication: set --kafka-security scram"
            " [STREAMLEDGER_KAFKA_SECURITY / --kafka-security]"
        )


def wait_all(futures: Mapping[Any, Future[Any]], doing: str, timeout_s: float) -> None:
    """Every future's result, or ``InfraError`` naming what failed (one line)."""
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise InfraError(f"{doing}: {kafka_error_text(exc)}") from exc
        except TimeoutError:
            raise InfraError(f"{doing}: no answer within {timeout_s:g} s") from None


def upsert_credentials(client: AdminClient, settings: Settings, principal: str) -> None:
    """SCRAM-SHA-512 credentials with the stack's stored password (created the first time).
    Returns once the controller has them; ``create_credentials`` also waits for the brokers."""
    password = ensure_password(settings.home, principal)
    upsertion = UserScramCredentialUpsertion(
        principal,
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
        password.encode(),
    )
    futures = client.alter_user_scram_credentials([upsertion])
    wait_all(futures, f"creating the credentials of {principal}", ADMIN_REQUEST_TIMEOUT_S)


# --- every broker shows a change (decision 0126) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Broker:
    """One broker and an admin client bootstrapped to it alone. That client only ever asks
    for SCRAM credentials, which librdkafka sends to any connected broker: this one."""

    node_id: int
    address: str
    client: AdminClient


@dataclass(frozen=True, slots=True)
class Cluster:
    """The admin client that changes principals, and every broker to read each change back."""

    settings: Settings
    client: AdminClient
    brokers: tuple[Broker, ...]


def cluster_of(settings: Settings) -> Cluster:
    """The cluster's brokers as its metadata names them (the addresses clients connect to)."""
    client = admin_client(settings)
    metadata = cluster_metadata(client, settings, ADMIN_REQUEST_TIMEOUT_S)
    if len(metadata.brokers) == 1:  # every request goes to it: no client of its own needed
        ((node_id, broker),) = metadata.brokers.items()
        return Cluster(settings, client, (Broker(node_id, f"{broker.host}:{broker.port}", client),))
    brokers = []
    for node_id, broker in sorted(metadata.brokers.items()):
        address = f"{broker.host}:{broker.port}"
        alone = admin_client(replace(settings, bootstrap_servers=address))
        brokers.append(Broker(node_id, address, alone))
    return Cluster(settings, client, tuple(brokers))


def wait_every_broker(
    cluster: Cluster, change: str, shows: Callable[[Broker], bool], *, timeout_s: float
) -> None:
    """Return once ``shows(broker)`` holds on every broker; ``InfraError`` naming the first
    broker that does not within ``timeout_s`` (the controller acknowledged the change)."""
    deadline = time.monotonic() + timeout_s
    for broker in cluster.brokers:
        while not shows(broker):
            if time.monotonic() >= deadline:
                raise InfraError(
                    f"{change}: the controller accepted it but broker {broker.node_id}"
                    f" ({broker.address}) does not show it after {timeout_s:g} s"
                )
            time.sleep(CHANGE_VISIBLE_POLL_S)


def has_credentials(broker: Broker, principal: str) -> bool:
    """Whether ``broker``'s metadata holds SCRAM credentials of ``principal``."""
    try:
        described = broker.client.describe_user_scram_credentials([principal])
        assert isinstance(described, dict)  # named users: one future each
        described[principal].result(timeout=ADMIN_REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        if is_not_found(exc):
            return False
        raise InfraError(
            f"describing the credentials of {principal}: {kafka_error_text(exc)}"
        ) from exc
    return True


def held_grants(cluster: Cluster, broker: Broker, principal: str) -> frozenset[Grant]:
    """The ACL rows of ``principal`` in ``broker``'s authorizer (which answers DescribeAcls)."""
    ask_next(cluster, broker)
    try:
        bindings = cluster.client.describe_acls(principal_filter(principal))
        return frozenset(grant_of(binding) for binding in bindings.result(ADMIN_REQUEST_TIMEOUT_S))
    except KafkaException as exc:
        raise InfraError(f"describing the ACLs of {principal}: {kafka_error_text(exc)}") from exc


def ask_next(cluster: Cluster, broker: Broker) -> None:
    """Make ``broker`` the one the cluster's client sends its next DescribeAcls to. librdkafka
    sends it to the broker the last metadata named controller, which a KRaft broker picks at
    random among the live ones: ask for metadata until it names ``broker``."""
    if len(cluster.brokers) == 1:
        return
    for _ in range(CONTROLLER_PICKS_MAX):
        metadata = cluster_metadata(cluster.client, cluster.settings, ADMIN_REQUEST_TIMEOUT_S)
        if metadata.controller_id == broker.node_id:
            return
    raise InfraError(
        f"the cluster did not name broker {broker.node_id} in {CONTROLLER_PICKS_MAX} answers"
    )


def is_not_found(exc: KafkaException) -> bool:
    """A described or deleted user without SCRAM credentials."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.RESOURCE_NOT_FOUND


def principal_filter(principal: str) -> AclBindingFilter:
    return AclBindingFilter(
        ResourceType.ANY,
        ANY_NAME,
        ResourcePatternType.ANY,
        f"User:{principal}",
        ANY_NAME,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


# --- create and revoke -------------------------------------------------------------------------


def create_credentials(cluster: Cluster, settings: Settings, principal: str) -> None:
    """``upsert_credentials``, returning once every broker holds them."""
    upsert_credentials(cluster.client, settings, principal)
    wait_every_broker(
        cluster,
        f"creating the credentials of {principal}",
        lambda broker: has_credentials(broker, principal),
        timeout_s=CHANGE_VISIBLE_TIMEOUT_S,
    )


def create(
    settings: Settings, spec: PrincipalSpec, cluster: Cluster | None = None
) -> tuple[Grant, ...]:
    """Credentials and ACLs of ``spec`` (idempotent: a second call changes nothing).

    Returns once every broker's authorizer holds the ACLs. They are written after the
    credentials, and a broker applies the metadata log in order (the credentials to its
    authenticator before the ACLs to its authorizer), so by then it also lets the principal in.
    """
    require_scram(settings)
    grants = grants_for(spec, settings.topic_prefix)
    cluster = cluster or cluster_of(settings)
    create_credentials(cluster, settings, spec.name)
    futures = cluster.client.create_acls(acl_bindings(spec.name, grants))
    wait_all(futures, f"creating the ACLs of {spec.name}", ADMIN_REQUEST_TIMEOUT_S)
    wait_every_broker(
        cluster,
        f"creating the ACLs of {spec.name}",
        lambda broker: set(grants) <= held_grants(cluster, broker, spec.name),
        timeout_s=CHANGE_VISIBLE_TIMEOUT_S,
    )
    return grants


def create_services(settings: Settings) -> None:
    """The stack's service principals with their ACLs on the settings' topics (``topics.apply``
    under scram, so every topic prefix gets its grants)."""
    cluster = cluster_of(settings)
    for name, role in SERVICE_PRINCIPALS.items():
        create(settings, PrincipalSpec(name, role, read_replies=role == ROLE_UPSTREAM), cluster)


def service_lines() -> list[str]:
    return [f"principals: {', '.join(SERVICE_PRINCIPALS)}"]


def revoke(settings: Settings, principal: str) -> int:
    """Delete ``principal``'s credentials, its ACLs and its stored password; the ACLs removed.

    Returns once no broker holds either: a new connection is refused at once. Connections it
    already has are not cut: its next request is refused (docs/security.md). The credentials
    go first, so a broker that dropped the ACLs has dropped them too (the log's order)."""
    require_scram(settings)
    if principal in RESERVED_PRINCIPALS:
        raise SettingError(f"principal {principal!r} is the stack's own super user")
    cluster = cluster_of(settings)
    delete_credentials(cluster, principal)
    removed = 0
    for future in cluster.client.delete_acls([principal_filter(principal)]).values():
        try:
            removed += len(future.result(timeout=ADMIN_REQUEST_TIMEOUT_S))
        except KafkaException as exc:
            raise InfraError(f"deleting the ACLs of {principal}: {kafka_error_text(exc)}") from exc
    wait_every_broker(
        cluster,
        f"deleting the ACLs of {principal}",
        lambda broker: not held_grants(cluster, broker, principal),
        timeout_s=CHANGE_VISIBLE_TIMEOUT_S,
    )
    remove_password(settings.home, principal)
    return removed


def delete_credentials(cluster: Cluster, principal: str) -> None:
    """Delete ``principal``'s SCRAM credentials (none: already revoked); returns once no broker
    holds them."""
    deletion = UserScramCredentialDeletion(principal, ScramMechanism.SCRAM_SHA_512)
    for future in cluster.client.alter_user_scram_credentials([deletion]).values():
        try:
            future.result(timeout=ADMIN_REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            if not is_not_found(exc):  # none: already revoked
                raise InfraError(
                    f"deleting the credentials of {principal}: {kafka_error_text(exc)}"
                ) from exc
        except TimeoutError:
            raise InfraError(
                f"deleting the credentials of {principal}:"
                f" no answer within {ADMIN_REQUEST_TIMEOUT_S:g} s"
            ) from None
    wait_every_broker(
        cluster,
        f"deleting the credentials of {principal}",
        lambda broker: not has_credentials(broker, principal),
        timeout_s=CHANGE_VISIBLE_TIMEOUT_S,
    )


@dataclass(frozen=True, slots=True)
class PrincipalListing:
    name: str
    has_credentials: bool
    grants: tuple[Grant, ...]

    def lines(self) -> list[str]:
        state = "scram-sha-512" if self.has_credentials else "no credentials"
        head = f"{self.name:<16} {state}"
        if self.name == CONTROLLER_PRINCIPAL:
            return [f"{self.name:<16} sasl/plain on the controller listener only, super user"]
        if self.name in RESERVED_PRINCIPALS:
            return [f"{head}, super user"]
        if not self.grants:
            return [f"{head}, no ACLs"]
        return [head] + [f"    {grant.line()}" for grant in self.grants]


def list_principals(settings: Settings) -> list[PrincipalListing]:
    """Every SCRAM user and every principal with ACLs, with its ACL rows."""
    require_scram(settings)
    client = admin_client(settings)
    try:
        users = client.describe_user_scram_credentials()
        assert isinstance(users, Future)  # all users: one future (a list names one per user)
        described = users.result(timeout=ADMIN_REQUEST_TIMEOUT_S)
        every_binding = AclBindingFilter(
            ResourceType.ANY,
            ANY_NAME,
            ResourcePatternType.ANY,
            ANY_NAME,
            ANY_NAME,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        bindings = client.describe_acls(every_binding).result(timeout=ADMIN_REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        raise InfraError(f"listing the principals: {kafka_error_text(exc)}") from exc
    grants: dict[str, list[Grant]] = {}
    for binding in bindings:
        grants.setdefault(binding.principal.removeprefix("User:"), []).append(grant_of(binding))
    names = sorted(set(described) | set(grants) | {CONTROLLER_PRINCIPAL})
    return [
        PrincipalListing(name, name in described, tuple(sorted(grants.get(name, []), key=str)))
        for name in names
    ]


def grant_of(binding: AclBinding) -> Grant:
    """An ACL the broker holds, as a row of the table (an operation we never grant: its name)."""
    names: dict[object, str] = {
        **{value: key for key, value in RESOURCE_TYPES.items()},
        **{value: key for key, value in PATTERN_TYPES.items()},
        **{value: key for key, value in OPERATIONS.items()},
    }
    return Grant(
        names.get(binding.restype, str(binding.restype)),
        binding.name,
        names.get(binding.resource_pattern_type, str(binding.resource_pattern_type)),
        names.get(binding.operation, str(binding.operation)),
    )


# --- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quota:
    producer_byte_rate: int = PRODUCER_BYTE_RATE_DEFAULT
    request_percentage: int = REQUEST_PERCENTAGE_DEFAULT

    def text(self) -> str:
        return (
            f"producer_byte_rate={self.producer_byte_rate},"
            f"request_percentage={self.request_percentage}"
        )


def set_quotas(settings: Settings, principal: str, quota: Quota) -> None:
    """The broker's client quotas of ``principal``, with Kafka's ``kafka-configs`` tool (the
    Admin API's ``AlterClientQuotas`` is not in confluent-kafka). Local stack only: it needs
    the stack's Kafka jars."""
    run_config_command(
        settings, principal, f"setting the quotas of {principal}", "--alter", "--add-config",
        quota.text(),
    )  # fmt: skip


def describe_quotas(settings: Settings, principal: str) -> str:
    """What the broker holds as ``principal``'s client quotas: ``kafka-configs``' own line,
    e.g. "Quota configs for user-principal 'bank-a' are producer_byte_rate=1048576.0, ..."."""
    output = run_config_command(
        settings, principal, f"reading the quotas of {principal}", "--describe"
    )
    lines = [line for line in output.splitlines() if line.startswith("Quota configs for")]
    return lines[-1].strip() if lines else ""


def run_config_command(settings: Settings, principal: str, doing: str, *action: str) -> str:
    """``kafka-configs`` on ``principal``'s user entity, authenticated as admin; its output."""
    require_scram(settings)
    kafka_broker.ensure_installed(settings)
    paths = kafka_broker.KafkaPaths.of(settings)
    log = settings.home / "logs" / "kafka-quotas.log"
    with tempfile.TemporaryDirectory(prefix="streamledger-quota-") as directory:
        command_config = Path(directory) / "admin.properties"
        write_client_properties(settings, command_config)
        command = kafka_broker.java_command(
            settings,
            paths,
            QUOTA_TOOL_HEAP_MB,
            "kafka.admin.ConfigCommand",
            *("--bootstrap-server", settings.kafka_bootstrap),
            *("--command-config", str(command_config)),
            *("--entity-type", "users", "--entity-name", principal),
            *action,
        )
        kafka_broker.run_logged(command, log, QUOTA_TOOL_TIMEOUT_S, doing)
    return log.read_text(errors="replace")


def write_client_properties(settings: Settings, path: Path) -> None:
    """A Java client's properties as the admin principal, readable by this user only."""
    config = client_config(settings, ADMIN_PRINCIPAL)
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
        f' username="{config["sasl.username"]}" password="{config["sasl.password"]}";'
    )
    text = (
        f"security.protocol={config['security.protocol']}\n"
        f"sasl.mechanism={config['sasl.mechanisms']}\n"
        f"sasl.jaas.config={jaas}\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
