"""Subcommands: ``run`` (the supervised pipeline), ``demo`` (the main job), ``events tail``.

``run``'s optional parts: ``--api`` (on by default; ``--no-api`` leaves it out) supervises
``streamledger api`` on ``--api-port``; ``--with-prometheus`` starts the local Prometheus before
the pipeline and stops it after, scraping every child; ``--with-verifier`` supervises a periodic
``verify --every-s`` on the next metrics port — on by default with ``--with-prometheus`` (its
gauges feed the ``StreamLedgerVerify*`` alerts), off otherwise, ``--no-verifier`` to leave it out.

``run`` restarts a processor whose loop heartbeat stops moving for ``--stall-timeout-s``
(decision 0023), serves its own ``/metrics`` on the port after the last child's, and waits for
Kafka and PostgreSQL (it does not run them) before it starts a child, for
``--dependency-wait-s-max`` (0 = as long as it takes; decision 0023).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from pipeline.demo import DemoSettings, run_demo
from pipeline.dependencies import DependencyWatch, standard_probes
from pipeline.events_tail import print_events
from pipeline.local_prometheus import observed_by_prometheus, prometheus_url
from pipeline.status import (
    StatusReporter,
    commands_lag_source,
    dead_letter_source,
    metrics_urls,
)
from pipeline.supervisor import (
    RunSettings,
    Supervisor,
    plan_children,
    supervise,
    supervisor_metrics_port,
)
from pipeline.supervisor_metrics import SupervisorMetrics
from streamledger.cli_parser import (
    EXIT_OK,
    Subparsers,
    add_declared_arguments,
    given_settings,
    whole_number,
)
from streamledger.metrics_endpoint import MetricsEndpoint
from streamledger.setting_fields import build_declared, declaration_of
from streamledger.settings import Settings

RUN_PREFIX = "run_"  # the flags' namespace entries: run_<setting name>
RUN_LEFT_OUT = ("api_port",)  # added by add_api_arguments, shared with `demo`


def register(subparsers: Subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the pipeline: N processors + M projections, supervised, with a status line",
    )
    add_declared_arguments(run, RunSettings, dest_prefix=RUN_PREFIX, leave_out=RUN_LEFT_OUT)
    run.add_argument(
        "--processor-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for each `streamledger process` (--processor-arg=--batch-records-max=500)",
    )
    run.add_argument(
        "--projection-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for each `streamledger project`",
    )
    add_api_arguments(run, default_on=True)
    run.add_argument(
        "--with-prometheus",
        action="store_true",
        help="also run the local Prometheus (prometheus_port, 19090), stopped at exit",
    )
    run.add_argument(
        "--with-verifier",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="supervise `verify --every-s` on the next metrics port (default: with Prometheus)",
    )
    run.set_defaults(handler=run_pipeline)

    demo = subparsers.add_parser(
        "demo",
        help="the main job: stack up, pipeline, seeded workload, summary, verify (few minutes)",
    )
    defaults = DemoSettings()
    for flag, default, text in (
        ("--seed", defaults.seed, "seed of the workload: the same seed sends the same commands"),
        ("--tenants", defaults.tenants, "tenants in the workload"),
        ("--accounts", defaults.accounts_per_tenant, "accounts per tenant"),
        ("--commands", defaults.commands, "mixed commands after the opening phase"),
        ("--poison", defaults.poison, "undecodable records sent, for the dead-letter topic"),
    ):
        demo.add_argument(
            flag,
            type=whole_number,
            default=default,
            metavar="N",
            help=f"{text} (default {default})",
        )
    demo.add_argument(
        "--keep-running", action="store_true", help="keep the pipeline up after the report"
    )
    add_api_arguments(demo, default_on=True)
    demo.set_defaults(handler=run_demo_command)

    events = subparsers.add_parser("events", help="ledger.events for downstream subscribers")
    events_commands = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    tail = events_commands.add_parser(
        "tail", help="print committed events as JSON lines (read_committed, no consumer group)"
    )
    tail.add_argument("--tenant", default=None, help="only this tenant's events")
    tail.add_argument("--from-beginning", action="store_true", help="from the first event")
    tail.add_argument("--exit-at-end", action="store_true", help="stop at the end of the log")
    tail.add_argument(
        "--max-events",
        type=whole_number,
        default=None,
        metavar="N",
        help="stop after this many events (default: no limit)",
    )
    tail.set_defaults(handler=run_events_tail)


def add_api_arguments(parser: argparse.ArgumentParser, *, default_on: bool) -> None:
    parser.add_argument(
        "--api",
        action=argparse.BooleanOptionalAction,
        default=default_on,
        help="supervise `streamledger api` too (default on)",
    )
    api_port = declaration_of(RunSettings, "api_port")
    parser.add_argument(
        api_port.flag,
        type=whole_number,
        default=api_port.default,
        metavar="N",
        help=api_port.help_text(),
    )


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event (the caller finishes cleanly)."""
    stop = threading.Event()

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def run_pipeline(arguments: argparse.Namespace, settings: Settings) -> int:
    verifier = (
        arguments.with_prometheus if arguments.with_verifier is None else arguments.with_verifier
    )
    run = build_declared(
        RunSettings,
        given_settings(arguments, RunSettings, dest_prefix=RUN_PREFIX, leave_out=RUN_LEFT_OUT),
        processor_arguments=tuple(arguments.processor_arg),
        projection_arguments=tuple(arguments.projection_arg),
        verifier=verifier,
        api=arguments.api,
        api_port=arguments.api_port,
    )
    specs = plan_children(settings, run)
    metrics = SupervisorMetrics(spec.name for spec in specs)
    dependencies = DependencyWatch(
        standard_probes(settings), probe_interval_s=run.dependency_probe_interval_s
    )
    supervisor = Supervisor(settings, run, specs, dependencies=dependencies, metrics=metrics)
    reporter = StatusReporter(
        supervisor,
        lag_source=commands_lag_source(settings),
        dlq_source=dead_letter_source(settings),
    )
    stop = stop_on_signals()
    with contextlib.ExitStack() as resources:
        resources.enter_context(serving_supervisor_metrics(settings, run, metrics))
        if arguments.with_prometheus:
            report = resources.enter_context(observed_by_prometheus(settings, run))
            print(f"prometheus: {prometheus_url(settings)}  ({report.detail})", flush=True)
        supervise_with_status(supervisor, reporter, stop)
    return EXIT_OK


@contextlib.contextmanager
def serving_supervisor_metrics(
    settings: Settings, run: RunSettings, metrics: SupervisorMetrics
) -> Iterator[None]:
    """The supervisor's ``/metrics`` for the run. A port that is taken costs the endpoint, not
    the pipeline: one line says so and the run goes on."""
    port = supervisor_metrics_port(settings, run)
    try:
        endpoint = MetricsEndpoint(metrics.registry, lambda: True, port, host=settings.metrics_host)
    except OSError as exc:
        print(f"metrics:  supervisor endpoint not served on port {port}: {exc}", flush=True)
        yield
        return
    endpoint.start()
    print(f"metrics:  {'supervisor':<14} http://127.0.0.1:{port}/metrics", flush=True)
    try:
        yield
    finally:
        endpoint.stop()


def supervise_with_status(
    supervisor: Supervisor, reporter: StatusReporter, stop: threading.Event
) -> None:
    run, settings = supervisor.run, supervisor.settings
    extras = [text for flag, text in ((run.verifier, "a verifier"), (run.api, "the API")) if flag]
    print(
        f"pipeline: {run.processors} processors, {run.projections} projections"
        + "".join(f", {text}" for text in extras),
        flush=True,
    )
    print(f"logs:     {settings.home / 'logs'}", flush=True)
    for name, url in metrics_urls(supervisor):
        print(f"metrics:  {name:<14} {url}", flush=True)
    if run.api:
        print(f"api:      http://127.0.0.1:{run.api_port}/openapi.json", flush=True)
    next_status = [0.0]

    def tick() -> None:
        now = supervisor.clock()
        if now >= next_status[0]:
            next_status[0] = now + run.status_interval_s
            print(reporter.line(), flush=True)

    lines = supervise(supervisor, stop, on_line=lambda line: print(line, flush=True), on_tick=tick)
    print("stopping: sent SIGTERM to every process, so each committed or aborted its transaction")
    for line in lines:
        print(line, flush=True)


def run_demo_command(arguments: argparse.Namespace, settings: Settings) -> int:
    demo = DemoSettings(
        seed=arguments.seed,
        tenants=arguments.tenants,
        accounts_per_tenant=arguments.accounts,
        commands=arguments.commands,
        poison=arguments.poison,
        keep_running=arguments.keep_running,
        api=arguments.api,
        api_port=arguments.api_port,
    )

    def interrupt(signal_number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    return run_demo(settings, demo, sys.stdout, sys.stderr)


def run_events_tail(arguments: argparse.Namespace, settings: Settings) -> int:
    stop = stop_on_signals()
    try:
        print_events(
            settings,
            sys.stdout,
            tenant=arguments.tenant,
            from_beginning=arguments.from_beginning,
            stop=stop,
            exit_at_end=arguments.exit_at_end,
            events_max=arguments.max_events,
        )
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
