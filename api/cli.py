"""``streamledger api`` (serve the HTTP API) and ``streamledger tenants create-key|revoke-key``."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Final

import uvicorn
from starlette.types import ASGIApp

from api.api_keys import create_api_key, revoke_api_key
from api.app import create_app
from api.http_protocol import ProblemHttpToolsProtocol
from api.settings import ApiSettings, build_api_settings
from api.signing_keys_cli import add_signing_key_actions
from kafka_adapter.admin import broker_count
from projections.queries import check_reachable
from streamledger.cli_parser import add_declared_arguments, given_settings
from streamledger.settings import Settings

if TYPE_CHECKING:
    from streamledger.cli_parser import Subparsers

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
DEST_PREFIX: Final = "api_"  # the flags' namespace entries: api_<setting name>
DEPENDENCY_TIMEOUT_S: Final = 5.0  # the broker must answer a metadata request at start within


def register(subparsers: Subparsers) -> None:
    serve = subparsers.add_parser(
        "api",
        help="serve the HTTP API (commands with idempotency keys, balance and history reads)",
    )
    add_declared_arguments(serve, ApiSettings, dest_prefix=DEST_PREFIX)
    serve.add_argument(
        "--reader-url",
        default=None,
        help="the read role's postgresql:// URL (default: the database_url setting with the"
        " streamledger_api login)",
    )
    serve.add_argument(
        "--standby-reader-url",
        default=None,
        help="the read role's postgresql:// URL on the hot standby, for --read-from standby*"
        " (default: the local standby at postgres_standby_port with the streamledger_api login)",
    )
    serve.set_defaults(handler=run_api)

    tenants = subparsers.add_parser("tenants", help="tenants' API keys")
    commands = tenants.add_subparsers(dest="tenants_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create-key", help="make an API key for TENANT (shown once)")
    create.add_argument("tenant", help="the tenant id the key is for")
    create.set_defaults(handler=run_create_key)
    revoke = commands.add_parser("revoke-key", help="revoke an API key by its key id")
    revoke.add_argument("key_id", help="the key id printed by create-key")
    revoke.set_defaults(handler=run_revoke_key)
    add_signing_key_actions(commands)  # grant | rotate | revoke: signed commands (decision 0084)


def run_api(arguments: argparse.Namespace, settings: Settings) -> int:
    given = given_settings(arguments, ApiSettings, dest_prefix=DEST_PREFIX)
    host, read_from = given.pop("host"), given.pop("read_from")
    api = build_api_settings(
        settings,
        host=None if host is None else str(host),
        reader_url=arguments.reader_url,
        limits={name: value for name, value in given.items() if isinstance(value, int)},
        read_from=None if read_from is None else str(read_from),
        standby_reader_url=arguments.standby_reader_url,
    )
    # Bounded and named before uvicorn starts: an unreachable PostgreSQL or Kafka is one line
    # (decision 0022), not a traceback from a failed lifespan.
    check_reachable(api.reader_dsn)
    broker_count(settings, timeout_s=DEPENDENCY_TIMEOUT_S)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("streamledger.kafka").setLevel(logging.WARNING)
    keep_clean_exit_after_uvicorn()
    app = create_app(settings, api)
    freeze_start_up_objects()
    uvicorn.Server(server_config(app, api)).run()
    return EXIT_OK


def freeze_start_up_objects() -> None:
    """Put everything built at start-up (modules, settings, the app: ~50k objects) out of the
    cyclic garbage collector's reach, so a full collection walks only what requests made.
    A statement of a busy account's day builds thousands of tuples, and every few statements
    paid a full collection of the start-up objects: 15-20 ms of CPU, the statement's p99
    (bench/README.md, decision 0078). Collected first, so no garbage is frozen."""
    gc.collect()
    gc.freeze()


def keep_clean_exit_after_uvicorn() -> None:
    """Let a SIGTERM/SIGINT that uvicorn has handled end the process with exit code 0.

    uvicorn shuts down gracefully on the signal, then restores the handlers it found and raises
    the signal again; with the default handlers the process died "by signal SIGTERM" after a
    clean shutdown, which the supervisor (and an SRE) reads as a crash. With these handlers in
    place before uvicorn starts, the re-raised signal is a no-op and ``run_api`` returns.
    """
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, _signal_already_handled)


def _signal_already_handled(signal_number: int, frame: object) -> None:
    """uvicorn's own handler has already stopped the server: nothing is left to do."""


def server_config(app: ASGIApp, api: ApiSettings, *, log_level: str = "info") -> uvicorn.Config:
    """How ``streamledger api`` serves ``app`` (the tests serve it the same way): uvloop,
    httptools with problem+json for requests its parser refuses (``api.http_protocol``)."""
    return uvicorn.Config(
        app,
        host=api.host,
        port=api.port,
        loop="uvloop",
        http=ProblemHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )


def run_create_key(arguments: argparse.Namespace, settings: Settings) -> int:
    key = create_api_key(settings, arguments.tenant)
    print(f"tenant:  {key.tenant_id}")
    print(f"key id:  {key.key_id}")
    print(f"api key: {key.token}")
    print("(shown once; only its SHA-256 digest is stored)", file=sys.stderr)
    return EXIT_OK


def run_revoke_key(arguments: argparse.Namespace, settings: Settings) -> int:
    if revoke_api_key(settings, arguments.key_id):
        print(f"revoked {arguments.key_id}")
        return EXIT_OK
    print(f"no live key {arguments.key_id}", file=sys.stderr)
    return EXIT_NOT_FOUND
