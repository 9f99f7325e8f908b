"""docker-compose.yml is validated by a real compose implementation, not a string match.

Debian's docker-compose (v1, installed by `streamledger infra install` when root) checks a file
against the compose schema with `config` without a Docker engine. This test fails, never skips,
when it is missing.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from streamledger.settings import Settings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.system

COMPOSE_TIMEOUT_S = 60
COMPOSE_FILES = ("docker-compose.yml", "infra/compose/docker-compose.cluster.yml")


def compose_config(path, *extra):
    executable = shutil.which("docker-compose")
    assert executable is not None, "docker-compose is missing: run `streamledger infra install`"
    return subprocess.run(
        [executable, "--project-directory", str(REPO_ROOT), "-f", str(path), "config", *extra],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_is_valid(name):
    completed = compose_config(REPO_ROOT / name, "-q")
    assert completed.returncode == 0, completed.stderr


def test_compose_runs_the_kafka_version_the_project_pins():
    completed = compose_config(REPO_ROOT / "docker-compose.yml")
    assert completed.returncode == 0, completed.stderr
    pinned = next(f for f in dataclasses.fields(Settings) if f.name == "kafka_version").default
    assert f"image: apache/kafka:{pinned}" in completed.stdout
    for service in ("kafka:", "postgres:", "prometheus:", "grafana:"):
        assert f"\n  {service}\n" in completed.stdout


def test_the_validator_rejects_a_broken_file(tmp_path):
    """The control: the same command fails on a file that breaks the schema."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  kafka:\n    image: apache/kafka:4.1.1\n    ports: 19092\n")
    completed = compose_config(broken, "-q")
    assert completed.returncode != 0
    assert "ports" in completed.stderr
