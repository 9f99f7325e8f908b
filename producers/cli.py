"""``streamledger produce`` and ``streamledger loadgen``: the thin sending edges.

``produce`` reads JSON-line commands (``producers.jsonl``, ``docs/producing.md``) from a file or
stdin, reports every bad line as ``line N: field: reason`` on stderr, sends the good ones, prints
``sent=S failed=F`` and exits 1 if any line failed. ``loadgen`` sends ``producers.loadgen``'s
seeded workload at a target rate (or as fast as possible) with a progress line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Final

from producers.errors import CommandValidationError, ProducerError
from producers.jsonl import command_from_line, command_to_line
from producers.loadgen import LoadPlan, generate, opening_count, poison_records
from producers.sdk import LedgerProducer, SigningKey, read_signing_key, validate
from schemas.codec import encode_command
from schemas.model import Command
from streamledger.cli_parser import (
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_declared_arguments,
    decimal_number,
    given_settings,
    whole_number,
)
from streamledger.errors import SettingError
from streamledger.setting_fields import build_declared
from streamledger.settings import Settings

FLUSH_TIMEOUT_S: Final = 60.0
PROGRESS_INTERVAL_S: Final = 0.5
PROGRESS_BAR_WIDTH: Final = 30
RATE_SLEEP_MIN_S: Final = 0.001
LINE_LENGTH_MAX: Final = 1_048_576  # longer input lines are reported, not parsed
LOADGEN_PREFIX: Final = "plan_"  # the flags' namespace entries: plan_<LoadPlan field>


def register(subparsers: Subparsers) -> None:
    produce = subparsers.add_parser(
        "produce", help="send JSON-line commands (file or stdin) to ledger.commands"
    )
    produce.add_argument("--file", type=Path, help="read this file instead of stdin")
    add_signing_key_argument(produce)
    produce.set_defaults(handler=run_produce)

    loadgen = subparsers.add_parser("loadgen", help="send a seeded, reproducible workload")
    add_declared_arguments(loadgen, LoadPlan, dest_prefix=LOADGEN_PREFIX)
    loadgen.add_argument(
        "--rate",
        type=decimal_number,
        default=0.0,
        metavar="PER_S",
        help="target send rate in commands/s (default 0 = as fast as possible)",
    )
    loadgen.add_argument("--record", type=Path, help="write the commands sent here (JSONL)")
    loadgen.add_argument(
        "--poison",
        type=whole_number,
        default=0,
        metavar="N",
        help="undecodable records to add, for the dead-letter topic (default 0)",
    )
    loadgen.add_argument("--quiet", action="store_true", help="no progress line")
    add_signing_key_argument(loadgen)
    loadgen.set_defaults(handler=run_loadgen)


def add_signing_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signing-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="sign the commands of this key file's tenant (written by `streamledger tenants"
        " grant`); repeat for more tenants",
    )


def signing_keys(paths: list[Path]) -> dict[str, SigningKey]:
    """Tenant id -> key, from the ``--signing-key`` files."""
    return dict(read_signing_key(path) for path in paths)


# --------------------------------------------------------------------------- produce


def parse_lines(
    lines: Iterable[bytes | str], now_us: int, errors: IO[str]
) -> Iterator[tuple[int, Command | None]]:
    """Each command line's number and command, ``None`` for a bad line (reported on ``errors``).

    Lines are read as bytes and decoded one by one, so a line that is not UTF-8 is one bad line
    (reported like any other), not the end of the input."""
    for number, raw in enumerate(lines, start=1):
        try:
            if len(raw) > LINE_LENGTH_MAX:
                raise CommandValidationError("line", f"longer than {LINE_LENGTH_MAX} characters")
            line = decode_line(raw)
            if not line or line.startswith("#"):
                continue
            command = command_from_line(line, default_submitted_at_us=now_us)
            validate(command)
        except CommandValidationError as exc:
            print(f"line {number}: {exc}", file=errors)
            yield number, None
            continue
        yield number, command


def decode_line(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw.strip()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise CommandValidationError(
            "line", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None


def open_input(path: Path | None) -> IO[bytes]:
    """The ``--file`` to read (binary), or stdin; ``SettingError`` naming the file if it cannot
    be read — checked before anything connects to Kafka."""
    if path is None:
        return sys.stdin.buffer
    try:
        if path.is_dir():
            raise SettingError(f"--file {path}: is a directory, not a file of JSON lines")
        return path.open("rb")
    except OSError as exc:
        reason = exc.strerror or os.strerror(exc.errno or 0)
        raise SettingError(f"--file {path}: {reason}") from None


def run_produce(arguments: argparse.Namespace, settings: Settings) -> int:
    now_us = time.time_ns() // 1_000
    sent = failed = 0
    with ExitStack() as stack:
        source = stack.enter_context(open_input(arguments.file))
        producer = LedgerProducer(settings, signing_keys=signing_keys(arguments.signing_key))
        for _, command in parse_lines(source, now_us, sys.stderr):
            if command is None:
                failed += 1
                continue
            producer.send(command)
            sent += 1
        try:
            producer.flush(FLUSH_TIMEOUT_S)
        except ProducerError as exc:
            print(f"delivery: {exc}", file=sys.stderr)
        sent -= producer.failed
        failed += producer.failed
    print(f"sent={sent} failed={failed}")
    return EXIT_FAILURE if failed else EXIT_OK


# --------------------------------------------------------------------------- loadgen


class Progress:
    """A one-line progress bar with the send rate, redrawn at most every PROGRESS_INTERVAL_S."""

    def __init__(self, total: int, stream: IO[str], enabled: bool) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.drawn < PROGRESS_INTERVAL_S):
            return
        self.drawn = now
        rate = done / max(now - self.started, 1e-9)
        filled = PROGRESS_BAR_WIDTH * min(done, self.total) // self.total
        bar = "#" * filled + "." * (PROGRESS_BAR_WIDTH - filled)
        end = "\n" if final else ""
        self.stream.write(f"\r[{bar}] {done}/{self.total} {rate:,.0f} commands/s{end}")
        self.stream.flush()


def plan_from(arguments: argparse.Namespace) -> LoadPlan:
    """The plan of the flags given; the first command's time is now unless --start-us says."""
    given = given_settings(arguments, LoadPlan, dest_prefix=LOADGEN_PREFIX)
    if given["start_us"] is None:
        given["start_us"] = time.time_ns() // 1_000
    try:
        return build_declared(LoadPlan, given)
    except ValueError as exc:
        raise CommandValidationError("loadgen", str(exc)) from None


def pace(sent: int, rate: float, started: float) -> None:
    """Sleep until ``sent`` commands are due at ``rate`` per second (no-op when rate is 0)."""
    if rate <= 0:
        return
    ahead_s = sent / rate - (time.monotonic() - started)
    if ahead_s > RATE_SLEEP_MIN_S:
        time.sleep(ahead_s)


def run_loadgen(arguments: argparse.Namespace, settings: Settings) -> int:
    plan = plan_from(arguments)
    total = opening_count(plan) + plan.commands
    progress = Progress(total + arguments.poison, sys.stderr, enabled=not arguments.quiet)
    tenants = tuple(f"tenant-{index:04d}" for index in range(plan.tenants))
    poison: list[tuple[bytes, bytes, str]] = []
    poison_every = max(total // (arguments.poison + 1), 1)
    with ExitStack() as stack:
        record = (
            stack.enter_context(arguments.record.open("w", encoding="utf-8"))
            if arguments.record
            else None
        )
        producer = LedgerProducer(settings, signing_keys=signing_keys(arguments.signing_key))
        started = time.monotonic()
        for sent, generated in enumerate(generate(plan), start=1):
            if arguments.poison and sent == 1:
                sample = encode_command(generated.command)
                poison = poison_records(plan.seed, arguments.poison, tenants, sample)
            producer.send(generated.command)
            if record is not None:
                record.write(command_to_line(generated.command) + "\n")
            if poison and sent % poison_every == 0:
                key, value, _ = poison.pop()
                producer.send_raw(key, value)
            pace(sent, arguments.rate, started)
            progress.update(sent)
        for key, value, _ in poison:
            producer.send_raw(key, value)
        producer.flush(FLUSH_TIMEOUT_S)
        progress.update(producer.sent, final=True)
    print(f"sent={producer.sent} delivered={producer.delivered} failed={producer.failed}")
    return EXIT_FAILURE if producer.failed else EXIT_OK
