"""The processor's limits: one frozen ``ProcessorSettings``, built once at start-up.

Built from the shared ``Settings`` (addresses, topic prefix, metrics host and port) plus the
flags of ``streamledger process``, which derive from the fields' declarations (decision 0035).
Every limit is finite and checked when the object is built, however it is built; a bad one
raises ``SettingError`` naming it and its flag, so the command line prints one line and exits
before anything touched Kafka.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kafka_adapter.security import PROCESSOR_PRINCIPAL, security_config
from processors.command_signatures import SignatureMode, parse_signature_mode
from processors.signing_master import master_of_stack
from processors.tenant_quotas import QuotaLimits
from schemas.topics import LedgerTopicNames
from streamledger.errors import SettingError
from streamledger.setting_fields import (
    Declaration,
    build_declared,
    check_declared,
    declarations,
    limit,
    text_setting,
)
from streamledger.settings import Settings

INSTANCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECONDS_PER_DAY = 86_400
GROUP_ID_SUFFIX = "streamledger-processor"
DEFAULT_INSTANCE_ID = "0"
# A transaction abort that fails retriably (a timeout while the broker restarts) is asked again
# this many times before the processor exits (``KafkaTransport.abort``).
ABORT_RETRIES_MAX = 1


def _signature_mode_text(text: str) -> str:
    return parse_signature_mode(text).value


def parse_instance_id(text: str) -> str:
    if not INSTANCE_ID_PATTERN.match(text):
        raise ValueError(f"{text!r} must be 1-64 of A-Z a-z 0-9 . _ -")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorSettings:
    """Everything ``streamledger process`` needs, validated; passed down explicitly.

    Each limit is declared once, on its field (``streamledger.setting_fields``): the flag of
    ``streamledger process``, its help and its check derive from it. ``__post_init__`` checks
    every value and how they relate, so an object built directly is checked too."""

    # From the shared ``Settings`` (validated there).
    bootstrap_servers: str
    topic_prefix: str
    # SASL properties of the processor's principal (kafka_adapter.security; empty: plaintext).
    kafka_security: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    metrics_host: str = "127.0.0.1"  # the endpoint's address (Settings.metrics_host)
    instance_id: str = field(
        metadata=text_setting(
            parse_instance_id,
            "stable id of this instance; its transactional.id derives from it (default 0)",
        )
    )
    metrics_port: int = field(
        metadata=limit(
            0,
            65535,
            "port",
            "port of /metrics, /healthz, /readyz (default: the metrics_port setting; 0 = off)",
        )
    )
    batch_records_max: int = field(
        default=5_000, metadata=limit(1, 100_000, "records", "commands in one Kafka transaction")
    )
    # A batch is what was already fetched (``kafka_clients.take_batch``): this adds no wait to a
    # command that arrives while the loop is busy or idle (decision 0017).
    batch_interval_ms: int = field(
        default=100,
        metadata=limit(
            1, 60_000, "ms", "the longest an idle loop waits for the first command of a batch"
        ),
    )
    transaction_timeout_ms: int = field(
        default=10_000,
        metadata=limit(
            1_000, 900_000, "ms", "the broker aborts a transaction left open longer than this"
        ),
    )
    restore_timeout_s: int = field(
        default=120,
        metadata=limit(
            1,
            3_600,
            "s",
            "reading one partition's state (or one pass of small ones) must finish within this",
        ),
    )
    commit_retries_max: int = field(
        default=5,
        metadata=limit(0, 100, "retries", "retries of a commit that timed out, then abort"),
    )
    session_timeout_ms: int = field(
        default=10_000,
        metadata=limit(
            1_000, 300_000, "ms", "a silent instance leaves the group after this (Kafka session)"
        ),
    )
    # Restore runs inside the assignment callback, so a poll may be that far apart.
    max_poll_interval_ms: int = field(
        default=600_000,
        metadata=limit(
            10_000,
            3_600_000,
            "ms",
            "the longest between two polls (must exceed restore_timeout_s: restore runs there)",
        ),
    )
    shutdown_timeout_s: int = field(
        default=30,
        metadata=limit(1, 600, "s", "on SIGTERM: finish the batch and leave within this"),
    )
    idempotency_retention_s: int = field(
        default=30 * SECONDS_PER_DAY,
        metadata=limit(
            0,
            100 * 365 * SECONDS_PER_DAY,
            "s",
            "how long an idempotency key is remembered (0 = forever)",
        ),
    )
    request_timeout_s: int = field(
        default=30, metadata=limit(1, 600, "s", "one admin or offset look-up")
    )
    # The watchdog: a loop iteration (or one partition's restore) that takes longer than this
    # is a hang in a client call we could not bound; the process dumps its stacks and exits.
    stall_timeout_s: int = field(
        default=300,
        metadata=limit(
            10,
            7_200,
            "s",
            "watchdog: dump the stacks and exit when one loop step takes longer than this",
        ),
    )
    # An owner appends a tick record to a partition whose earliest pending deadline has
    # passed: a pending transfer expires within about this long after its deadline even when
    # nobody writes to its partition (processors.ticks, decision 0026).
    expiry_tick_interval_ms: int = field(
        default=1_000,
        metadata=limit(
            100, 3_600_000, "ms", "how often a partition with an expired deadline gets a tick"
        ),
    )
    # Per-tenant token bucket (issue 21 §4, decision 0083): a command that would be decided
    # fresh takes a token of its tenant's bucket, refilled by record time; with none left it is
    # rejected RATE_LIMITED (a reply only, with its retry-after). Off by default: load tests and
    # benchmarks preload one tenant far faster than any tenant's contract would allow.
    tenant_commands_per_second: int = field(
        default=0,
        metadata=limit(
            0,
            1_000_000,
            "commands/s",
            "per-tenant command rate before commands are rejected rate_limited (0 = off)",
        ),
    )
    tenant_command_burst: int = field(
        default=1_000,
        metadata=limit(
            1,
            10_000_000,
            "commands",
            "commands a tenant may send at once above its rate (its bucket's size)",
        ),
    )
    # The rate-limited counter has a tenant label: the first this many tenants get their own
    # series, every later one is counted under "other" (bounded cardinality).
    rate_limited_tenant_labels_max: int = field(
        default=50,
        metadata=limit(
            0, 10_000, "tenants", "tenants with their own series of the rate-limited counter"
        ),
    )

    # Signed commands (issue 21 §2, decision 0084): which commands must prove who may act for
    # their tenant. "enrolled": the tenants ever granted a signing key; "required": all.
    command_signatures: str = field(
        default=SignatureMode.ENROLLED.value,
        metadata=text_setting(
            _signature_mode_text,
            "off, enrolled (tenants granted a key must sign; the default) or required (all)",
        ),
    )
    # The master secret every signing key derives from (processors.signing_master; read from
    # the stack home by build_processor_settings). Empty: no registry, nothing verified, and a
    # signing-key command is dead-lettered as unknown.
    signing_master: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        check_declared(self)
        check_relations(self)

    @property
    def signature_mode(self) -> SignatureMode:
        return SignatureMode(self.command_signatures)

    @property
    def tenant_quota_limits(self) -> QuotaLimits | None:
        """The per-tenant bucket's limits, or None when rate limiting is off."""
        if self.tenant_commands_per_second == 0:
            return None
        return QuotaLimits(self.tenant_commands_per_second, self.tenant_command_burst)

    @property
    def group_id(self) -> str:
        return f"{self.topic_prefix}{GROUP_ID_SUFFIX}"

    @property
    def transactional_id(self) -> str:
        # Stable per instance: a restarted instance fences its own previous incarnation and
        # aborts whatever transaction that one left open.
        return f"{self.topic_prefix}{GROUP_ID_SUFFIX}-{self.instance_id}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def kafka_connection(self) -> dict[str, str]:
        """The connection part of each client's configuration: servers and security."""
        return {"bootstrap.servers": self.bootstrap_servers, **dict(self.kafka_security)}

    @property
    def topics(self) -> LedgerTopicNames:
        return LedgerTopicNames.with_prefix(self.topic_prefix)


def check_relations(settings: ProcessorSettings) -> None:
    """The limits that depend on each other."""
    if settings.max_poll_interval_ms <= settings.restore_timeout_s * 1000:
        raise SettingError(
            "setting max_poll_interval_ms (--max-poll-interval-ms): must exceed restore_timeout_s"
            " in ms, since restore runs between two polls"
        )
    # The slowest bounded step between two watchdog re-arms: one partition's restore, or a
    # commit with all its retries, followed by an abort with its retries.
    transaction_s = settings.transaction_timeout_ms // 1000
    commit_with_retries_s = (settings.commit_retries_max + 1) * transaction_s
    abort_with_retries_s = (ABORT_RETRIES_MAX + 1) * transaction_s
    slowest_step_s = max(settings.restore_timeout_s, commit_with_retries_s) + abort_with_retries_s
    if settings.stall_timeout_s <= slowest_step_s:
        raise SettingError(
            "setting stall_timeout_s (--stall-timeout-s): must exceed the slowest bounded step,"
            f" {slowest_step_s} s (a restore or a commit with its retries, then an abort with its"
            " retries)"
        )


def build_processor_settings(
    settings: Settings,
    *,
    instance_id: str = DEFAULT_INSTANCE_ID,
    metrics_port: int | None = None,
    limits: Mapping[str, int | None] | None = None,
    command_signatures: str | None = None,
) -> ProcessorSettings:
    """The settings of ``streamledger process``: the shared settings, the instance id, the
    metrics port (``None`` = the shared ``metrics_port``), the limits given by name and the
    signature mode (``None`` = the default). The signing master secret is read from the stack
    home (created the first time; none without a home). Raises ``SettingError`` naming the
    setting and its flag."""
    return build_declared(
        ProcessorSettings,
        {**(limits or {}), "command_signatures": command_signatures},
        signing_master=master_of_stack(settings.home),
        bootstrap_servers=settings.kafka_bootstrap,
        kafka_security=tuple(security_config(settings, PROCESSOR_PRINCIPAL).items()),
        topic_prefix=settings.topic_prefix,
        metrics_host=settings.metrics_host,
        instance_id=instance_id,
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
    )


# The limits with a default (every flag of ``streamledger process`` but --instance-id and
# --metrics-port, whose defaults come from elsewhere).
LIMITS: tuple[Declaration, ...] = tuple(
    declaration
    for declaration in declarations(ProcessorSettings)
    if declaration.has_default and declaration.is_limit
)
