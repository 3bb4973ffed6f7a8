"""The three-broker stack's layout: ports, quorum, replication, and a data dir's fixed size."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.stack import services


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]


def test_three_nodes_have_their_own_ports_dirs_and_one_quorum(tmp_path: Path) -> None:
    s = _settings(tmp_path, brokers=3, kafka_port=9092, kafka_controller_port=9093)
    nodes = services.nodes(s)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert [n.home.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    assert len({n.service.name for n in nodes}) == 3
    props = [services.broker_properties(s, n) for n in nodes]
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert props[1]["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert {p["log.dirs"] for p in props} == {str(n.home / "data") for n in nodes}
    for p in props:
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
    assert s.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert (s.topic_replicas, s.topic_min_insync) == (3, 2)


def test_one_node_is_the_single_broker_it_always_was(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    (node,) = services.nodes(s)
    props = services.broker_properties(s, node)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert node.home == s.data_dir / "kafka" and node.service.name == "kafka"
    assert (s.topic_replicas, s.topic_min_insync) == (1, 1)


def test_a_data_dir_keeps_the_size_it_was_formatted_with(tmp_path: Path) -> None:
    one = _settings(tmp_path)
    meta = one.data_dir / "kafka" / "data" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("cluster.id=abc\n")  # formatted before the size was recorded: one node
    three = one.model_copy(update={"brokers": 3})
    with pytest.raises(GuardstreamError) as info:
        services.up(three, Console(quiet=True))
    assert "1-broker" in info.value.cause and "GUARDSTREAM_BROKERS=1" in info.value.fix
    # `down` and `status` see the nodes the data dir has, whatever this shell says.
    assert services.as_formatted(three).brokers == 1


def test_the_secured_stack_is_one_broker(tmp_path: Path) -> None:
    with pytest.raises(GuardstreamError) as info:
        services.up(_settings(tmp_path, brokers=3), Console(quiet=True), secured=True)
    assert "one broker" in info.value.cause
