"""The root of StreamLedger's exception tree.

Business rejections are values (see ``processors.ledger.RejectReason``); exceptions are for bugs,
bad configuration and outages. Every module's exceptions derive from ``StreamLedgerError`` so the
command line can turn any of them into one line naming what went wrong::

    StreamLedgerError
    ├── SettingError            a setting or CLI argument is missing or malformed (names it)
    ├── InfraError              a local service could not be installed, started or reached
    │   └── PortInUseError      a port we need is taken by something else (names the setting)
    ├── TopicError              topic definitions and the broker disagree (drift, bad counts)
    ├── DecodeError             (schemas.codec) bytes that are not a record we can read
    ├── CommandValidationError  (producers) a command that breaks the contract (names the field)
    └── InvariantViolationError corrupt state: the process must stop, never log and skip
"""

from __future__ import annotations


class StreamLedgerError(Exception):
    """Base class of every error StreamLedger raises on purpose."""


class SettingError(StreamLedgerError):
    """A setting (environment variable or CLI flag) is malformed; the message names it."""


class InfraError(StreamLedgerError):
    """A local service (Kafka, PostgreSQL) could not be installed, started, stopped or reached."""


class PortInUseError(InfraError):
    """A port the local stack needs is already taken by another process."""


class TopicError(StreamLedgerError):
    """The declared topics and the broker's topics disagree in a way we refuse to fix silently."""


class InvariantViolationError(StreamLedgerError):
    """A ledger invariant is broken. The process stops; this is never caught and skipped."""
