"""The one place a Kafka client's connection configuration is made (decision 0062).

Every client of every service (processor, projection, API, dispatcher, producers, infra's admin
client, the test harness) builds its librdkafka configuration from ``client_config(settings,
principal)``: the bootstrap servers and, when ``settings.kafka_security`` is ``scram``,
SASL/SCRAM-SHA-512 as ``principal`` (or ``settings.kafka_principal`` when one is given) with the
password the stack keeps for it::

    {home}/kafka-principals/            mode 0700
    {home}/kafka-principals/<name>      the principal's password, mode 0600

``ensure_password`` creates one (random, 256 bits) the first time; ``infra up`` writes the admin
and controller passwords before the storage is formatted and the service principals' before their
SCRAM credentials are created (``infra.principals``).

A broker's refusal (``*_AUTHORIZATION_FAILED``, ``SASL_AUTHENTICATION_FAILED``) is translated
here into ``NotAuthorizedError``: one line naming the principal and what it was refused.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from confluent_kafka import KafkaError

from streamledger.errors import InfraError, SettingError
from streamledger.settings import KAFKA_SECURITY_SCRAM, PRINCIPAL_NAME_PATTERN, Settings

SCRAM_MECHANISM: Final = "SCRAM-SHA-512"
SCRAM_ITERATIONS: Final = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
PASSWORD_BYTES: Final = 32
CREDENTIALS_DIRECTORY_NAME: Final = "kafka-principals"

# The principals the stack itself uses. ``admin`` is a super user (topics, ACLs, credentials,
# the test harness); ``controller`` only authenticates the KRaft quorum (SASL/PLAIN).
ADMIN_PRINCIPAL: Final = "admin"
CONTROLLER_PRINCIPAL: Final = "controller"
PROCESSOR_PRINCIPAL: Final = "processor"
PROJECTION_PRINCIPAL: Final = "projection"
API_PRINCIPAL: Final = "api"
DISPATCHER_PRINCIPAL: Final = "dispatcher"
RECONCILER_PRINCIPAL: Final = "reconciler"
# The upstream principal of ``streamledger produce`` / ``loadgen`` / the demo.
PRODUCER_PRINCIPAL: Final = "producer"

AUTHORIZATION_FAILURES: Final = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)
SECURITY_SETTING_HINT: Final = (
    "setting kafka_security / kafka_principal: STREAMLEDGER_KAFKA_SECURITY, --kafka-security,"
    " STREAMLEDGER_KAFKA_PRINCIPAL, --kafka-principal"
)


class NotAuthorizedError(InfraError):
    """The broker refused this principal an operation, or did not accept its credentials."""


def is_scram(settings: Settings) -> bool:
    return settings.kafka_security == KAFKA_SECURITY_SCRAM


def principal_of(settings: Settings, service_principal: str) -> str:
    """The principal this process acts as: the one given in the settings, else the service's."""
    return settings.kafka_principal or service_principal


def client_config(settings: Settings, principal: str) -> dict[str, str]:
    """The connection part of a librdkafka configuration: bootstrap servers and security.

    ``principal`` is the service's own principal; ``settings.kafka_principal`` overrides it."""
    config = {"bootstrap.servers": settings.kafka_bootstrap}
    config.update(security_config(settings, principal))
    return config


def security_config(settings: Settings, principal: str) -> dict[str, str]:
    """The SASL properties of ``principal`` under ``scram``; nothing under ``plaintext``."""
    if not is_scram(settings):
        return {}
    name = principal_of(settings, principal)
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": SCRAM_MECHANISM,
        "sasl.username": name,
        "sasl.password": read_password(settings.home, name),
    }


# --- the stack's credentials ------------------------------------------------------------------


def credentials_directory(home: Path) -> Path:
    return home / CREDENTIALS_DIRECTORY_NAME


def password_path(home: Path, principal: str) -> Path:
    if PRINCIPAL_NAME_PATTERN.fullmatch(principal) is None:
        raise SettingError(f"{principal!r} is not a principal name (1-64 of a-z 0-9 . _ -)")
    return credentials_directory(home) / principal


def read_password(home: Path, principal: str) -> str:
    """The stored password of ``principal``; ``SettingError`` saying how to create one."""
    path = password_path(home, principal)
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        raise SettingError(
            f"Kafka principal {principal!r} has no credentials in {path.parent} (create it with"
            f" `streamledger principals create {principal} ...`, or start the stack with"
            f" --kafka-security scram) [{SECURITY_SETTING_HINT}]"
        ) from None
    except OSError as exc:
        raise SettingError(f"cannot read the password of {principal!r}: {exc}") from None
    if not password:
        raise SettingError(f"the password file {path} of {principal!r} is empty")
    return password


def ensure_password(home: Path, principal: str) -> str:
    """The stored password of ``principal``, created (random) the first time."""
    path = password_path(home, principal)
    if path.is_file():
        return read_password(home, principal)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    return password


def remove_password(home: Path, principal: str) -> None:
    password_path(home, principal).unlink(missing_ok=True)


def stored_principals(home: Path) -> list[str]:
    directory = credentials_directory(home)
    if not directory.is_dir():
        return []
    return sorted(
        path.name for path in directory.iterdir() if PRINCIPAL_NAME_PATTERN.fullmatch(path.name)
    )


# --- errors -----------------------------------------------------------------------------------


def is_authorization_failure(error: object) -> bool:
    """True for a ``KafkaError`` that says the broker refused the principal."""
    return isinstance(error, KafkaError) and error.code() in AUTHORIZATION_FAILURES


def principal_label(settings: Settings, service_principal: str) -> str:
    """How the broker knows this process: ``User:<name>``, or ``User:ANONYMOUS`` (plaintext)."""
    name = principal_of(settings, service_principal) if is_scram(settings) else "ANONYMOUS"
    return f"User:{name}"


def label_of_config(config: dict[str, str]) -> str:
    """The principal of a client configuration made by ``client_config``/``security_config``."""
    return f"User:{config.get('sasl.username', 'ANONYMOUS')}"


def refused(label: str, doing: str, error: object) -> NotAuthorizedError | None:
    """``NotAuthorizedError`` when ``error`` is the broker refusing principal ``label``
    ``doing`` something (one line: who, what, why; never librdkafka's text alone), else None."""
    if not isinstance(error, KafkaError) or not is_authorization_failure(error):
        return None
    return NotAuthorizedError(
        f"Kafka refused {label} {doing}: {error.name()}; grant it with `streamledger principals"
        f" create` or run as another principal [{SECURITY_SETTING_HINT}]"
    )
