"""The same ledger rules on other engines (faust-streaming, Quix Streams), for comparison.

Each peer runs in its own virtualenv (``.venv-peers-<name>``, made by ``bench.peers.venvs``)
and imports only the pure core and the codec from this project, never confluent-kafka's
version of ours.
"""
