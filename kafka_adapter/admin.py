"""The one way infra code talks to a Kafka cluster's admin API.

librdkafka prints connection failures straight to stderr unless the client has a logger; the
command line promises one line per error, so every admin client here logs to the
``streamledger.kafka`` Python logger instead (silent unless the application configures logging).
Kafka errors are translated to ``InfraError`` naming the bootstrap setting at this boundary.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata

from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from streamledger.errors import InfraError
from streamledger.settings import Settings

# A single admin request (metadata, describe) never waits longer than this unless told to.
ADMIN_REQUEST_TIMEOUT_S = 30.0

KAFKA_CLIENT_LOGGER = logging.getLogger("streamledger.kafka")
# A NullHandler keeps librdkafka's connection chatter off stderr when nobody configured logging;
# an application that does configure logging still receives it through propagation.
KAFKA_CLIENT_LOGGER.addHandler(logging.NullHandler())

BOOTSTRAP_SETTING_HINT = (
    "setting bootstrap_servers: STREAMLEDGER_BOOTSTRAP_SERVERS / --bootstrap-servers"
)


def admin_client(
    settings: Settings,
    *,
    timeout_s: float = ADMIN_REQUEST_TIMEOUT_S,
    principal: str = ADMIN_PRINCIPAL,
) -> AdminClient:
    """An admin client as ``principal`` (infra's requests: the stack's super user)."""
    timeout_ms = max(1, int(timeout_s * 1000))
    return AdminClient(
        {
            **client_config(settings, principal),
            "socket.timeout.ms": timeout_ms,
            "socket.connection.setup.timeout.ms": timeout_ms,
            # Fail fast between retries of a refused connection instead of backing off for seconds.
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )


def broker_count(settings: Settings, *, timeout_s: float = ADMIN_REQUEST_TIMEOUT_S) -> int:
    """How many brokers the cluster reports; raises ``InfraError`` when unreachable in time."""
    metadata = cluster_metadata(admin_client(settings, timeout_s=timeout_s), settings, timeout_s)
    return len(metadata.brokers)


def cluster_metadata(client: AdminClient, settings: Settings, timeout_s: float) -> ClusterMetadata:
    """``list_topics`` metadata, or ``InfraError`` naming the bootstrap address and setting."""
    try:
        return client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise unreachable_error(settings, timeout_s, exc) from exc


def unreachable_error(settings: Settings, timeout_s: float, exc: KafkaException) -> InfraError:
    return InfraError(
        f"cannot reach Kafka at {settings.kafka_bootstrap} within {timeout_s:g} s"
        f" ({kafka_error_text(exc)}) [{BOOTSTRAP_SETTING_HINT}]"
    )


def kafka_error_text(exc: BaseException) -> str:
    """The human part of a confluent-kafka exception, on one line."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        text = str(exc.args[0].str())
    else:
        text = str(exc)
    return " ".join(text.split())
