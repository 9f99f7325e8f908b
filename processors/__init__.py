"""Processors: the pure ledger core and the exactly-once consume-decide-produce loop."""
