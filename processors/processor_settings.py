"""The processor's limits: one frozen ``ProcessorSettings``, built once at start-up.

Built from the shared ``Settings`` (addresses, topic prefix, metrics host and port) plus the
flags of ``streamledger process``. Every limit is finite and checked here; a bad one raises
``SettingError`` naming it, so the command line prints one line and exits before anything
touched Kafka.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.topics import LedgerTopicNames
from streamledger.errors import SettingError
from streamledger.settings import Settings

INSTANCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECONDS_PER_DAY = 86_400
GROUP_ID_SUFFIX = "streamledger-processor"

# (name, default, minimum, maximum): the processor's named limits, all finite.
LIMITS: tuple[tuple[str, int, int, int], ...] = (
    ("batch_records_max", 5_000, 1, 100_000),
    ("batch_interval_ms", 100, 1, 60_000),
    ("transaction_timeout_ms", 10_000, 1_000, 900_000),
    ("restore_timeout_s", 120, 1, 3_600),
    ("commit_retries_max", 5, 0, 100),
    ("session_timeout_ms", 10_000, 1_000, 300_000),
    ("max_poll_interval_ms", 600_000, 10_000, 3_600_000),
    ("shutdown_timeout_s", 30, 1, 600),
    ("idempotency_retention_s", 30 * SECONDS_PER_DAY, 0, 100 * 365 * SECONDS_PER_DAY),
    ("request_timeout_s", 30, 1, 600),
    ("stall_timeout_s", 300, 10, 7_200),
    ("expiry_tick_interval_ms", 1_000, 100, 3_600_000),
)
LIMIT_NAMES = tuple(name for name, _, _, _ in LIMITS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorSettings:
    """Everything ``streamledger process`` needs, validated; passed down explicitly."""

    bootstrap_servers: str
    topic_prefix: str
    instance_id: str
    metrics_port: int  # 0 = no HTTP endpoint
    metrics_host: str = "127.0.0.1"  # the endpoint's address (Settings.metrics_host)
    batch_records_max: int = 5_000
    # The longest an idle loop waits for the first command of a batch. A batch is what was
    # already fetched (``kafka_clients.take_batch``): this adds no wait to a command that
    # arrives while the loop is busy or idle (decision 0017).
    batch_interval_ms: int = 100
    transaction_timeout_ms: int = 10_000
    restore_timeout_s: int = 120
    commit_retries_max: int = 5
    session_timeout_ms: int = 10_000
    # Restore runs inside the assignment callback, so a poll may be that far apart.
    max_poll_interval_ms: int = 600_000
    shutdown_timeout_s: int = 30
    idempotency_retention_s: int = 30 * SECONDS_PER_DAY  # 0 = keep keys forever
    request_timeout_s: int = 30  # admin and offset look-ups
    # The watchdog: a loop iteration (or one partition's restore) that takes longer than this
    # is a hang in a client call we could not bound; the process dumps its stacks and exits.
    stall_timeout_s: int = 300
    # How often an owner appends a tick record to a partition whose earliest pending deadline
    # has passed: a pending transfer expires within about this long after its deadline even
    # when nobody writes to its partition (processors.ticks, decision 0026).
    expiry_tick_interval_ms: int = 1_000

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
    def topics(self) -> LedgerTopicNames:
        return LedgerTopicNames.with_prefix(self.topic_prefix)


def build_processor_settings(
    settings: Settings,
    *,
    instance_id: str,
    metrics_port: int | None = None,
    limits: dict[str, int | None] | None = None,
) -> ProcessorSettings:
    """Validate the flags of ``streamledger process`` against the shared settings."""
    if not INSTANCE_ID_PATTERN.match(instance_id):
        raise SettingError(
            f"setting instance_id (--instance-id): {instance_id!r}"
            " must be 1-64 of A-Z a-z 0-9 . _ -"
        )
    port = settings.metrics_port if metrics_port is None else metrics_port
    if not 0 <= port <= 65535:
        raise SettingError(f"setting metrics_port (--metrics-port): {port} is outside 0..65535")
    values: dict[str, int] = {}
    for name, default, minimum, maximum in LIMITS:
        given = (limits or {}).get(name)
        value = default if given is None else given
        if not minimum <= value <= maximum:
            flag = "--" + name.replace("_", "-")
            raise SettingError(f"setting {name} ({flag}): {value} is outside {minimum}..{maximum}")
        values[name] = value
    if values["max_poll_interval_ms"] <= values["restore_timeout_s"] * 1000:
        raise SettingError(
            "setting max_poll_interval_ms (--max-poll-interval-ms): must exceed restore_timeout_s"
            " in ms, since restore runs between two polls"
        )
    # The slowest bounded step between two watchdog re-arms: one partition's restore, or a
    # commit with all its retries, followed by an abort.
    transaction_s = values["transaction_timeout_ms"] // 1000
    commit_with_retries_s = (values["commit_retries_max"] + 1) * transaction_s
    slowest_step_s = max(values["restore_timeout_s"], commit_with_retries_s) + transaction_s
    if values["stall_timeout_s"] <= slowest_step_s:
        raise SettingError(
            "setting stall_timeout_s (--stall-timeout-s): must exceed the slowest bounded step,"
            f" {slowest_step_s} s (a restore or a commit with its retries, then an abort)"
        )
    return ProcessorSettings(
        bootstrap_servers=settings.kafka_bootstrap,
        topic_prefix=settings.topic_prefix,
        instance_id=instance_id,
        metrics_port=port,
        metrics_host=settings.metrics_host,
        **values,
    )
