"""Figures of one bench run: repetitions → median/min/max, the printed table and the JSON file.

Every figure keeps all its repetitions; the table shows the median with [min … max]. A figure
whose run failed its correctness check keeps its numbers but is marked ``correct=False`` (shown
as ``INCORRECT``): a fast wrong answer is reported, never hidden, never counted as a result.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
VERSIONED_PACKAGES = (
    "confluent-kafka",
    "fastavro",
    "psycopg",
    "faust-streaming",
    "aiokafka",
    "quixstreams",
)


@dataclass
class Figure:
    group: str  # "processor", "projection", "latency", ...
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    correct: bool | None = None  # None: no correctness check applies
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def cell(self) -> str:
        if not self.values:
            return "not measured"
        low, high = min(self.values), max(self.values)
        text = f"{_number(self.median)} [{_number(low)} … {_number(high)}]"
        if len(self.values) == 1:
            text = _number(self.median)
        return text


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class BenchRun:
    size: str
    seed: int
    repetitions: int
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    sizes: dict[str, int] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    profile: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def figure(self, group: str, name: str, unit: str) -> Figure:
        for figure in self.figures:
            if (figure.group, figure.name) == (group, name):
                return figure
        figure = Figure(group, name, unit)
        self.figures.append(figure)
        return figure

    def add(self, group: str, name: str, unit: str, value: float) -> Figure:
        figure = self.figure(group, name, unit)
        figure.values.append(value)
        return figure

    def find(self, group: str, name: str) -> Figure | None:
        return next((f for f in self.figures if (f.group, f.name) == (group, name)), None)

    def last(self, group: str, name: str) -> float:
        """The latest value of a figure that must exist (a suite's own, just measured)."""
        figure = self.find(group, name)
        assert figure is not None and figure.values, f"no figure {group}/{name}"
        return figure.values[-1]

    def report(self, ratio_name: str, ratio_label: str) -> None:
        """A suite run on its own: the table, the median of its ratio figure, the results file."""
        print(self.table())
        ratio = self.find("ratio", ratio_name)
        if ratio is not None and ratio.values:
            print(f"{ratio_label}: median {statistics.median(ratio.values):.2f}")
        print(f"results: {self.write()}")

    def table(self) -> str:
        """A Markdown table: the same text goes to the terminal and into bench/README.md."""
        lines = [
            "| group | figure | median [min … max] | unit | n | check |",
            "|---|---|---|---|---|---|",
        ]
        for figure in self.figures:
            check = {None: "", True: "ok", False: "INCORRECT"}[figure.correct]
            if figure.note:
                check = f"{check} {figure.note}".strip()
            lines.append(
                f"| {figure.group} | {figure.name} | {figure.cell()} | {figure.unit}"
                f" | {len(figure.values)} | {check} |"
            )
        return "\n".join(lines)

    def write(self) -> Path:
        RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        path = RESULTS_DIRECTORY / f"{stamp}.json"
        document = {
            **asdict(self),
            "figures": [
                {**asdict(f), "median": f.median, "min": min(f.values, default=None),
                 "max": max(f.values, default=None)}
                for f in self.figures
            ],
            "machine": machine_description(),
            "versions": versions(),
        }  # fmt: skip
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        return path


def repetitions_at_most(wanted: int, most: int | None) -> int:
    """``wanted`` repetitions, but at most ``most`` (None: no bound). The one rule for a suite
    that runs fewer repetitions than ``--repetitions`` asks (the peers, reconciliation at full):
    a module run on its own passes its own count as given."""
    return wanted if most is None else min(wanted, most)


def machine_description() -> dict[str, object]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "load_average_at_end": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "streamledger": _git_revision()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _git_revision() -> str:
    try:
        completed = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=False,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return completed.stdout.strip() or "unknown"
