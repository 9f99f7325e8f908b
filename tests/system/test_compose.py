"""docker-compose.yml is validated by a real compose implementation, not a string match.

Debian's docker-compose (v1, installed by `streamledger infra install` when root) checks a file
against the compose schema with `config` without a Docker engine. This test fails, never skips,
when it is missing. The resolved model `config` prints (anchors merged, paths absolute) is then
read with the YAML library docker-compose itself runs on, and the StreamLedger services are
checked against it: each points at this file's Kafka and PostgreSQL, starts after `setup`, and
is scraped by the compose Prometheus where it serves its metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra import kafka_broker
from streamledger.settings import Settings, load_settings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.system

COMPOSE_TIMEOUT_S = 60
COMPOSE_FILES = ("docker-compose.yml", "infra/compose/docker-compose.cluster.yml")
# The StreamLedger processes and the command each runs (after the `streamledger` entrypoint).
PROCESS_COMMANDS = {
    "processor": ["process", "--instance-id=p0"],
    "projection": ["project"],
    "verifier": ["verify", "--every-s=600", "--metrics-port=9400"],
    "api": ["api", "--host", "0.0.0.0", "--port", "8080"],
}
STREAMLEDGER_SERVICES = ("setup", *PROCESS_COMMANDS)
# Loads YAML on stdin and prints it as JSON, run by docker-compose's own interpreter.
YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def compose_executable() -> str:
    executable = shutil.which("docker-compose")
    assert executable is not None, "docker-compose is missing: run `streamledger infra install`"
    return executable


def compose_config(path, *extra):
    # Without the variable that switches Prometheus to the host's targets: the defaults are tested.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEDGER_")}
    command = [compose_executable(), "--project-directory", str(REPO_ROOT), "-f", str(path)]
    return subprocess.run(
        [*command, "config", *extra],
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
    )


def compose_model(path: Path) -> dict[str, Any]:
    """The resolved model of a compose file, parsed by PyYAML under docker-compose's interpreter
    (Debian's docker-compose is a Python program; the project itself needs no YAML library)."""
    completed = compose_config(path)
    assert completed.returncode == 0, completed.stderr
    shebang = Path(compose_executable()).read_text(errors="replace").splitlines()[0]
    assert shebang.startswith("#!") and "python" in shebang, f"not a Python script: {shebang}"
    parsed = subprocess.run(
        [*shebang[2:].split(), "-c", YAML_TO_JSON],
        input=completed.stdout,
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT_S,
        check=True,
    )
    model: dict[str, Any] = json.loads(parsed.stdout)
    return model


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return compose_model(REPO_ROOT / "docker-compose.yml")["services"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_is_valid(name):
    completed = compose_config(REPO_ROOT / name, "-q")
    assert completed.returncode == 0, completed.stderr


def test_compose_runs_the_kafka_version_the_project_pins():
    completed = compose_config(REPO_ROOT / "docker-compose.yml")
    assert completed.returncode == 0, completed.stderr
    pinned = next(f for f in dataclasses.fields(Settings) if f.name == "kafka_version").default
    assert f"image: apache/kafka:{pinned}" in completed.stdout
    for service in ("kafka", "postgres", "prometheus", "grafana", *STREAMLEDGER_SERVICES):
        assert f"\n  {service}:\n" in completed.stdout


def test_the_validator_rejects_a_broken_file(tmp_path):
    """The control: the same command fails on a file that breaks the schema."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  kafka:\n    image: apache/kafka:4.1.1\n    ports: 19092\n")
    completed = compose_config(broken, "-q")
    assert completed.returncode != 0
    assert "ports" in completed.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("service_completed_successfully", "service_finished", "service_finished"),
        ("\n  setup:\n", "\n  set-up:\n", "setup"),
        (
            'STREAMLEDGER_METRICS_HOST: "0.0.0.0"',
            "STREAMLEDGER_METRICS_HOST: [0.0.0.0]",
            "environment",
        ),
    ],
)
def test_the_validator_rejects_a_broken_copy_of_the_stack(tmp_path, old, new, complaint):
    """The control for the service checks: the same file, broken in one place, fails."""
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new))
    completed = compose_config(broken, "-q")
    assert completed.returncode != 0
    assert complaint in completed.stderr


def test_every_streamledger_process_has_a_service_built_from_the_dockerfile(services):
    for name in STREAMLEDGER_SERVICES:
        service = services[name]
        assert service["build"]["context"] == str(REPO_ROOT), name
        assert service["image"] == "streamledger:local", name
    for name, command in PROCESS_COMMANDS.items():
        assert services[name]["command"] == command, name
        assert services[name]["restart"] == "unless-stopped", name
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["streamledger"]' in dockerfile
    assert "USER streamledger" in dockerfile


def test_the_services_point_at_the_compose_kafka_and_postgres(services):
    kafka = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    postgres = services["postgres"]["environment"]
    for name in STREAMLEDGER_SERVICES:
        environment = services[name]["environment"]
        assert environment["STREAMLEDGER_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        url = urlsplit(environment["STREAMLEDGER_DATABASE_URL"])
        assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432), name
        assert (url.username, url.password) == ("streamledger", "streamledger"), name
        assert url.path == "/" + postgres["POSTGRES_DB"], name
        assert environment["STREAMLEDGER_METRICS_HOST"] == "0.0.0.0", name


def test_setup_runs_after_the_infrastructure_and_everything_else_after_setup(services):
    setup = services["setup"]
    assert setup["entrypoint"] == ["sh", "-c"]
    assert setup["command"] == ["streamledger topics apply && streamledger db migrate"]
    assert setup["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["postgres"]
    for name in PROCESS_COMMANDS:
        condition = {"setup": {"condition": "service_completed_successfully"}}
        assert services[name]["depends_on"] == condition, name


def test_postgres_runs_the_shared_provisioning_script_as_an_admin(services):
    postgres = services["postgres"]
    script = REPO_ROOT / "infra" / "postgres_provision.sql"
    mounts = [volume.split(":") for volume in postgres["volumes"]]
    assert [str(script), "/docker-entrypoint-initdb.d/10-streamledger-provision.sql", "ro"] in (
        mounts
    )
    # The app role must not be the image's superuser: the script makes it NOSUPERUSER.
    assert postgres["environment"]["POSTGRES_USER"] != "streamledger"


def test_prometheus_scrapes_the_compose_services_where_they_serve_metrics(services):
    prometheus = services["prometheus"]
    compose_targets = REPO_ROOT / "infra" / "prometheus" / "targets-compose"
    assert f"{compose_targets}:/etc/prometheus/targets:ro" in prometheus["volumes"]
    scraped = set()
    for path in compose_targets.glob("*.json"):
        for group in json.loads(path.read_text()):
            scraped.update(group["targets"])
    assert scraped == {"processor:9400", "projection:9400", "verifier:9400", "api:8080"}
    for target in scraped:
        service, port = target.split(":")
        assert service in services, target
        if service == "api":
            assert services[service]["command"][-2:] == ["--port", port]
        else:
            assert services[service]["environment"]["STREAMLEDGER_METRICS_PORT"] == port


def test_the_cluster_file_describes_the_local_availability_topology():
    """docker-compose.cluster.yml and `infra up --brokers 3 --postgres-standby` are one shape
    (decisions 0036, 0037): three combined nodes on the local cluster's host ports, RF 3 and min
    ISR 2 as --brokers 3 derives them, and a PostgreSQL primary with a streaming standby."""
    cluster = compose_model(REPO_ROOT / "infra/compose/docker-compose.cluster.yml")["services"]
    local = load_settings(environment={"STREAMLEDGER_BROKERS": "3"}, working_directory=REPO_ROOT)
    nodes = kafka_broker.cluster_nodes(local)
    kafka = [cluster[f"kafka-{node.node_id}"] for node in nodes]
    published = [published_port(service["ports"][0]) for service in kafka]
    assert published == [node.client_port for node in nodes]
    for service in kafka:
        environment = service["environment"]
        assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert len(environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == len(nodes)
        assert environment["KAFKA_DEFAULT_REPLICATION_FACTOR"] == str(local.replication_factor)
        assert environment["KAFKA_MIN_INSYNC_REPLICAS"] == str(local.min_insync_replicas)
        assert environment["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    standby = cluster["postgres-standby"]
    assert "--slot=streamledger_standby" in " ".join(standby["command"])
    assert standby["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert [published_port(port) for port in cluster["postgres"]["ports"]] == [local.postgres_port]


def published_port(port: str | dict[str, Any]) -> int:
    """The host port of a resolved ``ports`` entry ("127.0.0.1:19092:19092" or a mapping)."""
    if isinstance(port, str):
        return int(port.split(":")[-2])
    return int(port["published"])
