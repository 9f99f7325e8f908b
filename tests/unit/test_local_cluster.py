"""The local availability topology (issue 22): a multi-node KRaft cluster and a PostgreSQL hot
standby, as rendered configuration and derived settings (no process is started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from infra import kafka_broker, postgres_server, postgres_standby
from streamledger.errors import InfraError, SettingError
from streamledger.settings import Settings, load_settings

HOME = Path("/srv/ha")


def cluster(**changes: object) -> Settings:
    values: dict[str, object] = {
        "home": HOME,
        "kafka_port": 36092,
        "kafka_controller_port": 36093,
        "brokers": 3,
        "replication_factor": 3,
        "min_insync_replicas": 2,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def properties(settings: Settings, node_id: int) -> dict[str, str]:
    paths = kafka_broker.KafkaPaths.of(settings, node_id)
    text = kafka_broker.server_properties(settings, paths, node_id)
    pairs = [line.split("=", 1) for line in text.splitlines() if not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_node_ports_step_by_two_like_the_compose_cluster():
    nodes = kafka_broker.cluster_nodes(cluster())
    assert [(node.client_port, node.controller_port) for node in nodes] == [
        (36092, 36093),
        (36094, 36095),
        (36096, 36097),
    ]
    assert cluster().kafka_bootstrap == "127.0.0.1:36092,127.0.0.1:36094,127.0.0.1:36096"


def test_every_node_is_a_voter_of_one_quorum_and_listens_on_its_own_ports():
    settings = cluster()
    second = properties(settings, 2)
    voters = "1@127.0.0.1:36093,2@127.0.0.1:36095,3@127.0.0.1:36097"
    assert second["controller.quorum.voters"] == voters
    assert properties(settings, 1)["controller.quorum.voters"] == voters
    assert second["node.id"] == "2"
    assert second["listeners"] == "PLAINTEXT://127.0.0.1:36094,CONTROLLER://127.0.0.1:36095"
    assert second["log.dirs"] == "/srv/ha/kafka-cluster/node-2/data"


def test_a_cluster_replicates_its_internal_topics_and_never_elects_an_unclean_leader():
    rendered = properties(cluster(), 3)
    assert rendered["default.replication.factor"] == "3"
    assert rendered["min.insync.replicas"] == "2"
    assert rendered["offsets.topic.replication.factor"] == "3"
    assert rendered["transaction.state.log.replication.factor"] == "3"
    assert rendered["transaction.state.log.min.isr"] == "2"
    assert rendered["unclean.leader.election.enable"] == "false"


def test_one_broker_keeps_the_single_node_layout():
    settings = Settings(home=HOME, kafka_port=29092, kafka_controller_port=29093)
    paths = kafka_broker.KafkaPaths.of(settings)
    assert paths.data == HOME / "kafka" / "data"
    assert paths.log == HOME / "logs" / "kafka.log"
    assert properties(settings, 1)["transaction.state.log.min.isr"] == "1"
    assert settings.kafka_bootstrap == "127.0.0.1:29092"


def test_nodes_whose_ports_collide_are_refused_naming_the_setting():
    with pytest.raises(SettingError, match="kafka_controller_port"):
        kafka_broker.cluster_nodes(cluster(kafka_controller_port=36094))


def test_brokers_alone_imply_replication_factor_three_and_min_isr_two():
    settings = load_settings(environment={"STREAMLEDGER_BROKERS": "3"}, working_directory=HOME)
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    explicit = load_settings(
        environment={"STREAMLEDGER_BROKERS": "3", "STREAMLEDGER_REPLICATION_FACTOR": "2"},
        working_directory=HOME,
    )
    assert (explicit.replication_factor, explicit.min_insync_replicas) == (2, 1)
    single = load_settings(environment={}, working_directory=HOME)
    assert (single.brokers, single.replication_factor, single.min_insync_replicas) == (1, 1, 1)


def test_with_a_standby_the_local_dsn_names_both_servers_and_asks_for_the_primary():
    without = Settings(home=HOME, postgres_port=36432)
    assert conninfo_to_dict(without.database_dsn)["port"] == "36432"
    settings = Settings(home=HOME, postgres_port=36432, postgres_standby_port=36433)
    parts = conninfo_to_dict(settings.database_dsn)
    assert (parts["host"], parts["port"]) == ("127.0.0.1,127.0.0.1", "36432,36433")
    assert parts["target_session_attrs"] == "primary"


def test_the_standby_port_may_not_be_another_port():
    with pytest.raises(SettingError, match="postgres_standby_port"):
        Settings(home=HOME, postgres_port=36432, postgres_standby_port=36432)


def test_the_controller_leader_is_the_newest_epoch_a_node_recorded(tmp_path):
    settings = cluster(home=tmp_path)
    node = kafka_broker.node_of(settings, 2)
    state_file = node.paths.data / kafka_broker.QUORUM_STATE_FILE
    state_file.parent.mkdir(parents=True)
    state_file.write_text(json.dumps({"leaderId": 3, "leaderEpoch": 7, "votedId": -1}))
    assert kafka_broker.quorum_state(node) == (3, 7)
    state_file.write_text(json.dumps({"leaderId": -1, "leaderEpoch": 8}))
    assert kafka_broker.quorum_state(node) is None  # an election in progress


def test_cluster_health_reads_as_one_line():
    health = kafka_broker.ClusterHealth(
        controller_leader=2,
        leader_epoch=4,
        partitions=72,
        under_replicated=24,
        offline=0,
        leaders={1: 36, 3: 36},
    )
    assert health.line() == (
        "kafka cluster: controller leader node 2 (epoch 4); 72 partitions, 24 under-replicated,"
        " 0 offline; leaders node 1: 36, node 3: 36"
    )


def test_the_standby_lives_beside_the_primary_and_replicates_through_the_admin_socket():
    paths = postgres_standby.standby_paths(Settings(home=HOME))
    assert paths.data == HOME / "postgres-standby" / "data"
    assert "local   replication  postgres  trust" in postgres_server.PG_HBA


def test_a_fenced_primary_is_never_started_again(tmp_path):
    paths = postgres_server.ClusterPaths.of(Settings(home=tmp_path))
    paths.data.mkdir(parents=True)
    (paths.data / postgres_server.FENCE_FILE_NAME).write_text("fenced at noon\n")
    with pytest.raises(InfraError, match="replaced by the promoted standby"):
        postgres_server.check_not_fenced(paths)


def test_promotion_needs_a_standby_port():
    with pytest.raises(InfraError, match="STREAMLEDGER_POSTGRES_STANDBY_PORT"):
        postgres_standby.require_port(Settings(home=HOME))


def test_cluster_ports_inside_the_ephemeral_range_are_refused(monkeypatch):
    monkeypatch.setattr(kafka_broker, "ephemeral_port_range", lambda: (32768, 60999))
    with pytest.raises(SettingError, match="ephemeral range 32768-60999"):
        kafka_broker.check_outside_ephemeral_range(kafka_broker.cluster_nodes(cluster()))
    low = cluster(kafka_port=26092, kafka_controller_port=26093)
    kafka_broker.check_outside_ephemeral_range(kafka_broker.cluster_nodes(low))
    single = Settings(home=HOME, kafka_port=33092, kafka_controller_port=33093)
    kafka_broker.check_outside_ephemeral_range(kafka_broker.cluster_nodes(single))
