"""Workloads and process harnesses shared by the tests and the benchmarks.

Both ``tests`` and ``bench`` import this package; it imports the product and never ``tests`` or
``bench``, and the product never imports it (import contracts in pyproject.toml). It is not
installed with the product: it is imported from the repository root.
"""
