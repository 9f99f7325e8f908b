"""StreamLedger's benchmarks: ``make bench`` / ``streamledger bench`` (see bench/README.md)."""
