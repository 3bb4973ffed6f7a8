"""The lean monitor's cached label children follow Faust's clearing at a rebalance."""

from __future__ import annotations

from types import SimpleNamespace

from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from guardstream.runtime.sensors import LeanPrometheusMonitor


def _received(registry: CollectorRegistry, topic: str) -> float | None:
    return registry.get_sample_value("faust_messages_received_per_topic_total", {"topic": topic})


def _sent(registry: CollectorRegistry, topic: str) -> float | None:
    return registry.get_sample_value("faust_topic_messages_sent_total", {"topic": f"topic.{topic}"})


def test_per_topic_counts_are_exported_again_after_a_rebalance_cleared_them() -> None:
    registry = CollectorRegistry()
    monitor = LeanPrometheusMonitor(metrics=FaustMetrics.create(registry, "faust"))
    tp = SimpleNamespace(topic="gs.requests", partition=0)
    monitor.on_message_in(tp, 1, None)
    monitor.on_send_initiated(None, "gs.admitted", None, 0, 0)
    assert _received(registry, "gs.requests") == 1 and _sent(registry, "gs.admitted") == 1

    monitor._clear_partition_related_metrics()  # what Faust does at a rebalance's start and end
    assert _received(registry, "gs.requests") is None

    monitor.on_message_in(tp, 2, None)
    monitor.on_send_initiated(None, "gs.admitted", None, 0, 0)
    assert _received(registry, "gs.requests") == 1 and _sent(registry, "gs.admitted") == 1
