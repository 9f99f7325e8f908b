"""The one place that reads the environment.

Every process builds one frozen ``Settings`` at start-up from, in rising precedence, the
defaults below, ``STREAMLEDGER_*`` environment variables and command-line flags. A missing or
malformed value raises ``SettingError`` naming both the variable and the flag, so the command
line can print one line and exit. Settings are then passed down explicitly; nothing else reads
``os.environ``.

Each setting is declared once, on its field of ``Settings`` (``streamledger.setting_fields``,
decision 0035): its flag, help text, variable, parser and check derive from that declaration.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from streamledger.errors import SettingError
from streamledger.native import PURE_PYTHON_VARIABLE
from streamledger.setting_fields import (
    ENVIRONMENT_PREFIX,
    WHOLE_NUMBER_PATTERN,
    Declaration,
    check_declared,
    declarations,
    limit,
    text_setting,
)
from streamledger.setting_fields import parse_int_in_range as parse_whole_number_in_range

TOPIC_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{0,64}$")
HOST_LENGTH_MAX = 253
# One label of a host name (RFC 1123, plus "_" which container names use).
HOST_LABEL_PATTERN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
PARTITIONS_MAX = 1024
# Callers that read a bounded number from text (``--limit``, ports) keep importing it from here.
parse_int_in_range = parse_whole_number_in_range
HEAP_MB_RANGE = (128, 16384)
BROKERS_MAX = 5  # a local cluster on one machine; production runs its own
KAFKA_NODE_PORT_STRIDE = 2  # node i's ports: the base ports + 2(i-1)
REPLICATION_FACTOR_FOR_CLUSTER_MAX = 3
# How clients authenticate to Kafka (decision 0062): no authentication, or SASL/SCRAM-SHA-512
# with an ACL per service principal.
KAFKA_SECURITY_PLAINTEXT = "plaintext"
KAFKA_SECURITY_SCRAM = "scram"
KAFKA_SECURITY_MODES = (KAFKA_SECURITY_PLAINTEXT, KAFKA_SECURITY_SCRAM)
# The default for a home whose Kafka storage was never formatted (decision 0087); a formatted one
# keeps the mode it was formatted with, recorded next to its storage (infra.kafka_broker):
# {home}/kafka/kafka-security, or {home}/kafka-cluster/node-1/kafka-security for a cluster.
KAFKA_SECURITY_DEFAULT = KAFKA_SECURITY_SCRAM
KAFKA_SECURITY_MARKER_NAME = "kafka-security"
KAFKA_DIRECTORY_NAME = "kafka"
KAFKA_CLUSTER_DIRECTORY_NAME = "kafka-cluster"
KAFKA_STORAGE_FORMATTED_FILE = Path("data") / "meta.properties"
# A Kafka principal's user name: it is also a file name under the stack home.
PRINCIPAL_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


# --- parsers: each takes the raw text and returns the value or raises ValueError(reason) ---


def parse_port(text: str) -> int:
    return parse_int_in_range(text, 1, 65535)


def parse_bootstrap_servers(text: str) -> str:
    servers = [part.strip() for part in text.split(",") if part.strip()]
    if not servers:
        raise ValueError("expected host:port[,host:port...]")
    for server in servers:
        host, separator, port = server.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # [IPv6]:port
        if not separator or host_problem(host) is not None:
            raise ValueError(f"{server!r} is not host:port ({host_problem(host) or 'no port'})")
        parse_port(port)
    return ",".join(servers)


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a host name, or None.

    An IPv6 literal (it has a ":"), an IPv4 dotted quad (each part 0..255: ``999.1.1.1`` is
    refused, not looked up as a name), or a host name of RFC 1123 labels whose last label is
    not all digits (so ``10.1.1`` is not taken for a name either)."""
    if not host or len(host) > HOST_LENGTH_MAX or not host.isascii():
        return f"{host[:40]!r} is not a host name or IP address"
    if ":" in host:
        return None if is_ip_address(host) else f"{host!r} is not a valid IPv6 address"
    labels = host.removesuffix(".").split(".")
    if WHOLE_NUMBER_PATTERN.fullmatch(labels[-1]):
        if is_ip_address(host):
            return None
        return f"{host!r} is not a valid IPv4 address (four numbers 0..255)"
    if not all(HOST_LABEL_PATTERN.fullmatch(label) for label in labels):
        return f"{host!r} is not a host name (labels of A-Z a-z 0-9 - _, at most 63 each)"
    return None


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_host(text: str) -> str:
    host = text.strip()
    problem = host_problem(host)
    if problem is not None:
        raise ValueError(problem)
    return host


def parse_home(text: str) -> Path:
    """The stack's home directory. Empty is an error, not the current directory; the path, or
    else its nearest existing parent, must be a directory (``infra up`` creates the rest)."""
    if not text.strip():
        raise ValueError("empty; unset it to use ./.streamledger, or name a directory")
    home = Path(text).expanduser().resolve()
    problem = home_problem(home)
    if problem is not None:
        raise ValueError(problem)
    return home


def home_problem(home: Path) -> str | None:
    """Why ``home`` cannot hold the stack (a file, or under a file), or None."""
    try:
        for candidate in (home, *home.parents):
            if candidate.exists():
                if candidate.is_dir():
                    return None
                if candidate == home:
                    return f"{home} is a file, not a directory"
                return f"{home} is under {candidate}, which is a file, not a directory"
    except OSError as exc:
        return f"{home}: {exc.strerror or exc}"
    return None


def parse_database_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected a postgresql:// URL")
    return text


def parse_topic_prefix(text: str) -> str:
    if not TOPIC_PREFIX_PATTERN.match(text):
        raise ValueError("use at most 64 of A-Z a-z 0-9 . _ -")
    return text


def parse_kafka_security(text: str) -> str:
    mode = text.strip().lower()
    if mode not in KAFKA_SECURITY_MODES:
        raise ValueError(f"{text[:40]!r} is not one of {', '.join(KAFKA_SECURITY_MODES)}")
    return mode


def parse_principal_name(text: str) -> str:
    if PRINCIPAL_NAME_PATTERN.fullmatch(text) is None:
        raise ValueError(f"{text[:40]!r} is not 1-64 of a-z 0-9 . _ - (starting a-z 0-9)")
    return text


def parse_kafka_version(text: str) -> str:
    if not re.fullmatch(r"4\.\d+\.\d+", text):
        raise ValueError("expected a Kafka 4.x version such as 4.1.1")
    return text


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings shared by every StreamLedger process, each declared once on its field
    (``streamledger.setting_fields``): flag, ``STREAMLEDGER_*`` variable, help and check.

    Ports are loopback-only on the local stack. ``bootstrap_servers`` and ``database_url``
    default to the local stack's addresses and may point anywhere else instead. Building one
    directly (tests) validates every value and the ports' consistency too; only ``home``'s file
    system check is left to ``load_settings``, which reads it from the outside.
    """

    home: Path = field(
        metadata=text_setting(
            parse_home,
            "the stack's home directory: data, logs, run files (default ./.streamledger)",
            environment=True,
            checked_on_build=False,
        )
    )
    kafka_port: int = field(
        default=19092, metadata=limit(1, 65535, "port", "the local Kafka broker", environment=True)
    )
    kafka_controller_port: int = field(
        default=19093,
        metadata=limit(1, 65535, "port", "the local Kafka controller", environment=True),
    )
    postgres_port: int = field(
        default=15432,
        metadata=limit(1, 65535, "port", "the local PostgreSQL server", environment=True),
    )
    bootstrap_servers: str = field(
        default="",
        metadata=text_setting(
            parse_bootstrap_servers,
            "Kafka to use, host:port[,host:port...] (default: the local broker)",
            environment=True,
        ),
    )
    database_url: str = field(
        default="",
        metadata=text_setting(
            parse_database_url,
            "PostgreSQL to use, a postgresql:// URL (default: the local server)",
            environment=True,
        ),
    )
    topic_prefix: str = field(
        default="",
        metadata=text_setting(
            parse_topic_prefix,
            "prefix of every topic and consumer group: at most 64 of A-Z a-z 0-9 . _ -",
            environment=True,
        ),
    )
    partitions: int = field(
        default=12,
        metadata=limit(
            1, PARTITIONS_MAX, "partitions", "partitions of each ledger topic", environment=True
        ),
    )
    replication_factor: int = field(
        default=1,
        metadata=limit(1, 16, "brokers", "copies of each topic partition", environment=True),
    )
    min_insync_replicas: int = field(
        default=1,
        metadata=limit(
            1,
            16,
            "brokers",
            "copies a write needs before it counts (<= replication_factor)",
            environment=True,
        ),
    )
    kafka_version: str = field(
        default="4.1.1",
        metadata=text_setting(
            parse_kafka_version, "the Kafka 4.x release the local stack runs", environment=True
        ),
    )
    kafka_heap_mb: int = field(
        default=512,
        metadata=limit(*HEAP_MB_RANGE, "MiB", "the local broker's JVM heap", environment=True),
    )
    metrics_port: int = field(
        default=9400,
        metadata=limit(
            1,
            65535,
            "port",
            "the first port of /metrics, /healthz, /readyz (the pipeline counts up from it)",
            environment=True,
        ),
    )
    # Where /metrics, /healthz, /readyz listen: loopback on a host, 0.0.0.0 in a container.
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=text_setting(
            parse_host,
            "address /metrics, /healthz, /readyz listen on (0.0.0.0 in a container)",
            environment=True,
        ),
    )
    # The local Prometheus server (infra/prometheus_server.py).
    prometheus_port: int = field(
        default=19090,
        metadata=limit(1, 65535, "port", "the local Prometheus server", environment=True),
    )
    # The local Kafka cluster's size (infra/kafka_broker.py, decision 0036): node i listens on
    # kafka_port + 2(i-1) and kafka_controller_port + 2(i-1). Given without a replication factor,
    # it also sets replication_factor = min(brokers, 3) and min_insync_replicas = that - 1 (>= 1).
    brokers: int = field(
        default=1,
        metadata=limit(
            1,
            BROKERS_MAX,
            "nodes",
            "Kafka nodes of the local stack, each broker and controller (3: RF 3, min ISR 2)",
            environment=True,
        ),
    )
    # The local PostgreSQL hot standby (infra/postgres_standby.py, decision 0037). With one, the
    # local DSN names both servers and asks for the primary, so a promotion needs no change.
    postgres_standby_port: int = field(
        default=0,
        metadata=limit(
            0, 65535, "port", "the local PostgreSQL hot standby (0 = none)", environment=True
        ),
    )

    # How every client of this process authenticates (kafka_adapter.security, decision 0062).
    # Read from the environment or a flag, unset means the mode the home's Kafka storage was
    # formatted with, scram for a new home (load_settings, decision 0087); a Settings value built
    # in code with no stack behind it (unit tests, tools) carries no credentials unless it says so.
    kafka_security: str = field(
        default=KAFKA_SECURITY_PLAINTEXT,
        metadata=text_setting(
            parse_kafka_security,
            "Kafka client security: scram (SASL/SCRAM-SHA-512 + an ACL per service principal), or"
            " plaintext (local only)",
            environment=True,
            default_text="the mode the home's Kafka storage was formatted with; scram for a new"
            " home",
        ),
    )
    kafka_principal: str = field(
        default="",
        metadata=text_setting(
            parse_principal_name,
            "the Kafka principal to authenticate as under scram (default: the service's own;"
            " its password is read from {home}/kafka-principals)",
            environment=True,
        ),
    )

    def __post_init__(self) -> None:
        check_declared(self)
        check_consistency(self)

    @property
    def kafka_bootstrap(self) -> str:
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return ",".join(
            f"127.0.0.1:{self.kafka_port + KAFKA_NODE_PORT_STRIDE * node}"
            for node in range(self.brokers)
        )

    @property
    def database_dsn(self) -> str:
        if self.database_url:
            return self.database_url
        if not self.postgres_standby_port:
            return (
                f"postgresql://streamledger:streamledger@127.0.0.1:{self.postgres_port}"
                "/streamledger"
            )
        # Both servers; libpq connects to the one not in recovery (the primary; "read-write" would
        # refuse the read roles, which are read-only by default), so after `infra promote`
        # a reconnect finds the promoted standby (decision 0037).
        return (
            f"postgresql://streamledger:streamledger@127.0.0.1:{self.postgres_port},"
            f"127.0.0.1:{self.postgres_standby_port}/streamledger"
            "?target_session_attrs=primary"
        )

    def topic(self, name: str) -> str:
        """The full name of a ledger topic, e.g. ``topic("ledger.events")``."""
        return f"{self.topic_prefix}{name}"


# Every shared setting, in the order ``--help`` lists them.
SETTING_SPECS: tuple[Declaration, ...] = declarations(Settings)


def load_settings(
    environment: Mapping[str, str] | None = None,
    flags: Mapping[str, str | None] | None = None,
    working_directory: Path | None = None,
) -> Settings:
    """Build the settings: defaults < environment < flags. Raises ``SettingError``.

    ``flags`` maps field names to the raw text given on the command line (``None`` = not given).
    """
    source_environment = os.environ if environment is None else environment
    given_flags = flags or {}
    values: dict[str, object] = {}
    for spec in SETTING_SPECS:
        flag_text = given_flags.get(spec.name)
        if flag_text is not None:
            values[spec.name] = parse_one(spec, flag_text, source=spec.flag)
        elif spec.environment_variable in source_environment:
            raw = source_environment[spec.environment_variable]
            values[spec.name] = parse_one(spec, raw, source=spec.environment_variable)
    if "home" not in values:
        home = ((working_directory or Path.cwd()) / ".streamledger").resolve()
        problem = home_problem(home)
        if problem is not None:
            raise SettingError(
                f"setting home (default ./.streamledger): {problem}"
                " [set STREAMLEDGER_HOME or --home]"
            )
        values["home"] = home
    values.update(replication_for_brokers(values))
    if "kafka_security" not in values:
        home_path = values["home"]
        brokers = values.get("brokers", 1)
        assert isinstance(home_path, Path) and isinstance(brokers, int)
        values["kafka_security"] = default_kafka_security(home_path, brokers)
    settings = Settings(**values)  # type: ignore[arg-type]
    check_consistency(settings)
    return settings


def kafka_directory(home: Path, brokers: int) -> Path:
    """The local Kafka storage of ``home``: node 1's for a cluster (infra.kafka_broker)."""
    if brokers == 1:
        return home / KAFKA_DIRECTORY_NAME
    return home / KAFKA_CLUSTER_DIRECTORY_NAME / "node-1"


def formatted_kafka_security(home: Path, brokers: int) -> str | None:
    """The mode the home's Kafka storage was formatted with; None if it never was. A storage
    formatted before the mode was recorded (decision 0062) is plaintext."""
    directory = kafka_directory(home, brokers)
    marker = directory / KAFKA_SECURITY_MARKER_NAME
    try:
        return parse_kafka_security(marker.read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        pass
    if (directory / KAFKA_STORAGE_FORMATTED_FILE).is_file():
        return KAFKA_SECURITY_PLAINTEXT
    return None


def default_kafka_security(home: Path, brokers: int) -> str:
    """``kafka_security`` when no flag or variable gives it (decision 0087): a formatted home
    keeps its mode, so a running stack still starts; a new home is formatted with scram."""
    return formatted_kafka_security(home, brokers) or KAFKA_SECURITY_DEFAULT


def replication_for_brokers(values: Mapping[str, object]) -> dict[str, int]:
    """A cluster size given without a replication factor implies one: every partition on up to
    three nodes, and a write counts once all but one of them have it (decision 0036)."""
    brokers = values.get("brokers")
    if not isinstance(brokers, int) or "replication_factor" in values:
        return {}
    replication_factor = min(brokers, REPLICATION_FACTOR_FOR_CLUSTER_MAX)
    derived = {"replication_factor": replication_factor}
    if "min_insync_replicas" not in values:
        derived["min_insync_replicas"] = max(1, min(replication_factor - 1, 2))
    return derived


def parse_one(spec: Declaration, raw: str, *, source: str) -> object:
    try:
        return spec.parse_text(raw)
    except ValueError as exc:
        raise SettingError(
            f"setting {spec.name} ({source}): {exc}"
            f" [set {spec.environment_variable} or {spec.flag}]"
        ) from None


def check_consistency(settings: Settings) -> None:
    ports = {
        "kafka_port": settings.kafka_port,
        "kafka_controller_port": settings.kafka_controller_port,
        "postgres_port": settings.postgres_port,
        "metrics_port": settings.metrics_port,
        "prometheus_port": settings.prometheus_port,
    }
    if settings.postgres_standby_port:
        ports["postgres_standby_port"] = settings.postgres_standby_port
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise SettingError(f"setting {name}: port {port} is also {seen[port]}; choose another")
        seen[port] = name
    if settings.min_insync_replicas > settings.replication_factor:
        raise SettingError(
            "setting min_insync_replicas: must not exceed replication_factor"
            f" ({settings.min_insync_replicas} > {settings.replication_factor})"
        )


def replace(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with some fields changed (tests and sub-processes use this); it is
    validated like any other ``Settings`` (``__post_init__``)."""
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


# STREAMLEDGER_* variables that are not settings but a choice for every process of a run: a child
# keeps them (a child that ran the compiled core under a pure-Python parent would be a silent mix)
INHERITED_VARIABLES: Final = (PURE_PYTHON_VARIABLE,)


def child_environment(settings: Settings | None) -> dict[str, str]:
    """The environment of a child process that must see exactly ``settings``: this process's
    environment without its ``STREAMLEDGER_*`` variables (settings, test switches), except the
    ``INHERITED_VARIABLES``, plus the variables that reproduce ``settings`` (none for None)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(ENVIRONMENT_PREFIX) or key in INHERITED_VARIABLES
    }
    if settings is not None:
        environment.update(environment_for(settings))
    return environment


def environment_for(settings: Settings) -> dict[str, str]:
    """The ``STREAMLEDGER_*`` variables that reproduce ``settings`` in a child process."""
    result: dict[str, str] = {}
    for spec in SETTING_SPECS:
        value = getattr(settings, spec.name)
        if value in ("", None):
            continue
        result[spec.environment_variable] = str(value)
    return result
