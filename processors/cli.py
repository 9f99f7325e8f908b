"""``streamledger process``: run one processor instance until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from processors.loop import Processor, tune_garbage_collection
from processors.metrics import MetricsServer, ProcessorMetrics
from processors.processor_settings import (
    DEFAULT_INSTANCE_ID,
    ProcessorSettings,
    build_processor_settings,
)
from streamledger.cli_parser import add_declared_arguments, given_settings
from streamledger.settings import Settings

if TYPE_CHECKING:
    from streamledger.cli_parser import Subparsers

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEST_PREFIX = "process_"  # the flags' namespace entries: process_<setting name>


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "process",
        help="run the transactional ledger processor (one instance of the consumer group)",
        description=(
            "Consume ledger.commands, decide each command, and write events, outcomes, balances"
            " and dead letters in one Kafka transaction per batch."
        ),
    )
    add_declared_arguments(parser, ProcessorSettings, dest_prefix=DEST_PREFIX)
    parser.set_defaults(handler=run_process)


def run_process(arguments: argparse.Namespace, settings: Settings) -> int:
    given = given_settings(arguments, ProcessorSettings, dest_prefix=DEST_PREFIX)
    instance_id = given.pop("instance_id")
    metrics_port = given.pop("metrics_port")
    processor_settings = build_processor_settings(
        settings,
        instance_id=DEFAULT_INSTANCE_ID if instance_id is None else str(instance_id),
        metrics_port=metrics_port if isinstance(metrics_port, int) else None,
        limits={name: value for name, value in given.items() if isinstance(value, int)},
    )
    metrics = ProcessorMetrics()
    tune_garbage_collection()
    processor = Processor(processor_settings, metrics)
    processor.check_topics()  # before any logging: a refusal is one line on stderr
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("streamledger.processor.kafka").setLevel(logging.WARNING)
    stop = threading.Event()
    install_stop_signals(stop)
    server = None
    if processor_settings.metrics_port:
        server = MetricsServer(
            metrics, processor_settings.metrics_port, host=processor_settings.metrics_host
        )
        server.start()
    logging.getLogger("streamledger.processor").info(
        "processor %s starting (group %s, transactional.id %s)",
        processor_settings.instance_id,
        processor_settings.group_id,
        processor_settings.transactional_id,
    )
    try:
        processor.run(stop)
    finally:
        if server is not None:
            server.stop()
    return 0


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to finish its batch and leave the group."""

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
