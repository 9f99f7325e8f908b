"""``streamledger process``: run one processor instance until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
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
# SIGTERM was honoured, but the last batch did not finish within shutdown_timeout_s (a Kafka
# client call that hangs past its own timeout): the process left like a kill -9 would, which
# the design survives (its open transaction is aborted), with every thread's stack in its log.
EXIT_SHUTDOWN_ABANDONED = 4
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


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
    # before any thread exists (librdkafka's included), so every thread inherits the mask
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    given = given_settings(arguments, ProcessorSettings, dest_prefix=DEST_PREFIX)
    instance_id = given.pop("instance_id")
    metrics_port = given.pop("metrics_port")
    command_signatures = given.pop("command_signatures")
    processor_settings = build_processor_settings(
        settings,
        instance_id=DEFAULT_INSTANCE_ID if instance_id is None else str(instance_id),
        metrics_port=metrics_port if isinstance(metrics_port, int) else None,
        limits={name: value for name, value in given.items() if isinstance(value, int)},
        command_signatures=None if command_signatures is None else str(command_signatures),
    )
    metrics = ProcessorMetrics(
        rate_limited_tenant_labels_max=processor_settings.rate_limited_tenant_labels_max
    )
    tune_garbage_collection()
    processor = Processor(processor_settings, metrics)
    processor.check_topics()  # before any logging: a refusal is one line on stderr
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("streamledger.processor.kafka").setLevel(logging.WARNING)
    stop, finished = threading.Event(), threading.Event()
    install_stop_signals(stop, finished, shutdown_timeout_s=processor_settings.shutdown_timeout_s)
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
        finished.set()
        if server is not None:
            server.stop()
    return 0


def install_stop_signals(
    stop: threading.Event, finished: threading.Event, *, shutdown_timeout_s: float
) -> None:
    """SIGTERM and SIGINT ask the loop to finish its batch and leave the group, within
    ``shutdown_timeout_s``.

    Python runs a signal handler only once the main thread is back in the interpreter, so a
    librdkafka call that hangs past its own timeout (librdkafka #5456: seen in
    ``send_offsets_to_transaction`` after a broker restart) made the process deaf to SIGTERM
    until the supervisor killed it. So the signals are blocked everywhere (``run_process``) and
    taken by a thread of their own with ``sigwait``; if the loop has not finished in time, that
    thread logs every thread's stack and ends the process with ``EXIT_SHUTDOWN_ABANDONED``."""

    def wait_for_signal() -> None:
        received = signal.sigwait(STOP_SIGNALS)
        logging.getLogger("streamledger.processor").info(
            "%s: finishing the open batch (at most %s s)",
            signal.Signals(received).name,
            shutdown_timeout_s,
        )
        stop.set()
        if finished.wait(shutdown_timeout_s):
            return
        logging.getLogger("streamledger.processor").error(
            "the loop did not finish within shutdown_timeout_s (%s s): leaving without it, as a"
            " kill -9 would; its transaction is aborted. Stacks follow.",
            shutdown_timeout_s,
        )
        faulthandler.dump_traceback(all_threads=True)
        os._exit(EXIT_SHUTDOWN_ABANDONED)

    threading.Thread(target=wait_for_signal, name="stop-signals", daemon=True).start()
