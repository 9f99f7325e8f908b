"""StreamLedger: a multi-tenant, double-entry payment ledger on Apache Kafka."""

__version__ = "0.1.0"
