"""StreamLedger's benchmarks: ``make bench`` / ``python -m bench`` (see bench/README.md)."""
