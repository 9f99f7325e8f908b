"""Notifications: tenants' webhook endpoints and the dispatcher that delivers events to them.

Modules, by job:

- ``signing``: the Stripe-style signature (HMAC-SHA256 over ``timestamp.body``), made and checked;
- ``payloads``: an event (a balance-monitor notification) as the JSON body a receiver gets, and
  the event types and notification kinds one subscribes to;
- ``retries``: the bounded exponential backoff with jitter (pure);
- ``routing``: which endpoint gets which event, the per-endpoint queues, the commit position (pure);
- ``store``: the endpoints and deliveries in PostgreSQL (schema ``streamledger_notify``);
- ``delivery``: one endpoint's worker: posts in sequence order, retries, disables, dead-letters;
- ``dispatcher``: ``streamledger notify``, the consumer of ``ledger.events`` and
  ``ledger.notifications`` that feeds the workers;
- ``settings``, ``metrics``, ``cli``.

Decisions 0038 (subscriptions and delivery), 0039 (the live stream) and 0068 (monitor
notifications as webhooks) say why.
"""
