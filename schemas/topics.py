"""The ledger's topic names: part of the contract, spelled here once.

Every other module takes a name from here (``EVENTS_TOPIC``) and prefixes it with the deployment's
``topic_prefix`` (``Settings.topic`` or ``LedgerTopicNames.with_prefix``). How each topic is
configured on the broker (retention, compaction) is ``infra.topics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

COMMANDS_TOPIC: Final = "ledger.commands"
EVENTS_TOPIC: Final = "ledger.events"
OUTCOMES_TOPIC: Final = "ledger.outcomes"
BALANCES_TOPIC: Final = "ledger.balances"
COMMANDS_DLQ_TOPIC: Final = "ledger.commands.dlq"
REPLIES_TOPIC: Final = "ledger.replies"
NOTIFICATIONS_TOPIC: Final = "ledger.notifications"  # balance monitors' edges (since v1.5)


@dataclass(frozen=True, slots=True)
class LedgerTopicNames:
    """The full (prefixed) names of the ledger topics, for producers, processors, projections."""

    commands: str
    events: str
    outcomes: str
    balances: str
    commands_dlq: str
    replies: str
    notifications: str

    def all(self) -> tuple[str, ...]:
        return (
            self.commands,
            self.events,
            self.outcomes,
            self.balances,
            self.commands_dlq,
            self.replies,
            self.notifications,
        )

    @classmethod
    def with_prefix(cls, topic_prefix: str) -> LedgerTopicNames:
        """The names under one prefix."""
        return cls(
            commands=f"{topic_prefix}{COMMANDS_TOPIC}",
            events=f"{topic_prefix}{EVENTS_TOPIC}",
            outcomes=f"{topic_prefix}{OUTCOMES_TOPIC}",
            balances=f"{topic_prefix}{BALANCES_TOPIC}",
            commands_dlq=f"{topic_prefix}{COMMANDS_DLQ_TOPIC}",
            replies=f"{topic_prefix}{REPLIES_TOPIC}",
            notifications=f"{topic_prefix}{NOTIFICATIONS_TOPIC}",
        )
