"""Reconciliation with bank and PSP statements (issue 20), as a stream.

Statements (camt.053, a documented CSV) are parsed by a pure core (``camt053``,
``statement_csv``, ``amounts``) into ``StatementLine`` values, imported once each onto
``ledger.statements`` (``importer``), and matched against the ledger's movements on the
bank-mirror account by a transactional stream processor (``matching`` is the pure core,
``matcher`` the Kafka loop) whose results go to ``ledger.reconciliation``. The records' Avro
schemas are a contract of their own (``reconciliation/avro``, version v1.1, decisions 0052, 0099).
"""
