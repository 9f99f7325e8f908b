"""The producers' exceptions (their place in the tree: ``streamledger.errors``).

- ``CommandValidationError``: a command breaks the contract; ``field`` and ``reason`` say how;
  ``CommandFormatError``: a JSON line is not a command (missing, unknown or mistyped field).
- ``ProducerError``: the broker or the local queue failed us. ``BackpressureTimeoutError``: the
  local queue stayed full for backpressure_timeout_s; ``FlushTimeoutError``: records still
  undelivered when flush's timeout ran out; ``DeliveryError``: the broker refused or timed out a
  record; ``OutcomeTimeoutError``: no outcome for a command arrived in time (request/reply).
"""

from __future__ import annotations

from streamledger.errors import StreamLedgerError


class CommandValidationError(StreamLedgerError):
    """A command breaks the contract's limits; raised before anything is sent."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CommandFormatError(CommandValidationError):
    """A JSON command line is malformed: not an object, or a missing/unknown/mistyped field."""


class ProducerError(StreamLedgerError):
    """Producing to Kafka failed."""


class BackpressureTimeoutError(ProducerError):
    """The local send queue stayed full for longer than ``backpressure_timeout_s``."""


class FlushTimeoutError(ProducerError):
    """``flush`` ran out of time with records still waiting for delivery."""

    def __init__(self, message: str, undelivered: int) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class DeliveryError(ProducerError):
    """The broker refused a record, or it was not acknowledged within the delivery timeout."""


class OutcomeTimeoutError(ProducerError):
    """No outcome for the command arrived on ``ledger.outcomes`` within the timeout."""
