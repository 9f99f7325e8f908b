"""StreamLedger's exception tree, drawn once, here.

Business rejections are values (``RejectReason`` in the contract); exceptions are for bugs, bad
configuration and outages. Every exception StreamLedger raises on purpose derives from
``StreamLedgerError``, so the command line turns any of them into one line naming what went
wrong. Third-party errors (librdkafka, psycopg, OS errors) leave an adapter only as one of these,
raised ``from`` the original.

The classes live with the part that raises them (a module name in brackets; no bracket: this
module). ``tests/unit/test_errors_tree.py`` checks this drawing against
``StreamLedgerError.__subclasses__()``, recursively, after importing every project package::

    StreamLedgerError
    ├── SettingError                  a setting or CLI argument is missing or malformed (names it)
    ├── InfraError                    a service could not be installed, started or reached
    │   ├── PortInUseError            a port we need is taken by something else (names the setting)
    │   ├── NotAuthorizedError        [kafka_adapter.security] Kafka refused a principal (names it)
    │   └── ProjectionDatabaseError   [projections.store] PostgreSQL failed or was unreachable
    ├── TopicError                    topic definitions and the broker disagree (drift, counts)
    ├── InvariantViolationError       corrupt state: the process stops, never logs and skips
    │   ├── EventCannotApplyError     [projections.batch] an event that cannot apply to the view
    │   ├── OutOfBalanceError         [projections.reports] a trial balance that does not net to 0
    │   ├── StatementMismatchError    [projections.reports] entries that do not add up
    │   └── ChainIncompleteError      [projections.reports] rows without their chain links
    ├── SchemaLoadError               [schemas.avro_schemas] an .avsc file is missing or malformed
    ├── DecodeError                   [schemas.codec] bytes that are not a record we can read
    │   ├── WrongMarkerError          [schemas.codec] not our wire format's first byte
    │   ├── TruncatedError            [schemas.codec] the record ends early
    │   ├── UnknownFingerprintError   [schemas.codec] a schema we do not know
    │   ├── UnexpectedRecordError     [schemas.codec] a valid record of another kind
    │   └── BodyInvalidError          [schemas.codec] the body breaks its schema
    ├── EncodeError                   [schemas.codec] a value that its schema cannot write
    ├── NotPlainError                 [schemas.avro_writers] left to fastavro (never leaves codec)
    ├── CommandValidationError        [producers.errors] a command that breaks the contract
    │   └── CommandFormatError        [producers.errors] a JSON line that is not a command
    ├── ProducerError                 [producers.errors] sending commands failed
    │   ├── BackpressureTimeoutError  [producers.errors] the local queue stayed full
    │   ├── FlushTimeoutError         [producers.errors] records not delivered in time
    │   ├── DeliveryError             [producers.errors] the broker refused a record
    │   └── OutcomeTimeoutError       [producers.errors] no outcome within the wait
    ├── ProcessorKafkaError           [processors.kafka_clients] the loop cannot handle it alone
    │   ├── AbortableError            [processors.kafka_clients] abort, rewind, retry the batch
    │   └── FencedError               [processors.kafka_clients] outdated producer or member
    ├── RestoreError                  [processors.restore] a partition's state cannot be rebuilt
    ├── MigrationError                [projections.migrations] a migration or its history is bad
    ├── PositionMovedError            [projections.store] stored offsets moved: re-seek
    ├── QueryError                    [projections.queries] a malformed read (limit, cursor)
    └── ApiProblemError               [api.problems] an HTTP problem (status, title, detail)
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
