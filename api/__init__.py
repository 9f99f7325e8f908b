"""``streamledger api``: the HTTP API of the ledger (Starlette on uvicorn).

Layers, one module each::

    app.py        routes: HTTP in, HTTP out (Starlette); nothing else knows about HTTP
    bodies.py     strict request bodies (msgspec) -> commands; pure
    problems.py   RFC 9457 problem details; the API's exception tree
    gateway.py    submit a command and wait for its outcome (idempotency decided here first)
    outcomes.py   the outcome cache fed by a read_committed consumer of ledger.outcomes
    reads.py      tenant-scoped reads of the projection (async pool, row-level security)
    api_keys.py   per-tenant API keys: tokens, SHA-256 digests, the SQL that stores them
    views.py      JSON shapes of balances, entries, transfers and outcomes; pure
    metrics.py    request count and latency by route template and status
    openapi.py    the OpenAPI 3.1 document, built from the body types
    settings.py   ``ApiSettings``: every limit of the service, named and finite
    commands.py   ``streamledger api`` and ``streamledger tenants create-key``

The decision record is ``docs/decisions/0011-http-api.md``.
"""
