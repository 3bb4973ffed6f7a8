"""`/debug/consumer`: what the worker's consumer believes about each partition it holds.

When a partition stops moving while others flow, the reason lives in Faust's private
bookkeeping (a partition left paused, dropped from the fetch set by back-pressure, or a
position behind the committed offset). This page reads it without stopping the worker, so
an operator can see *which* of those it is from one `curl`. The attributes read are Faust
and aiokafka internals, so every read is guarded: a missing one shows as null.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

CONSUMER_PATH = "/debug/consumer"


def _tp_name(tp: Any) -> str:
    return f"{tp.topic}[{tp.partition}]"


def consumer_snapshot(app: faust.App) -> dict[str, Any]:
    """Per assigned partition: fetched or not, and why; read, committed and end offsets."""
    consumer: Any = getattr(app, "_consumer", None)
    if consumer is None:
        return {"started": False, "partitions": {}}
    active = getattr(consumer, "_active_partitions", None) or set()
    paused: set[Any] = getattr(consumer, "_paused_partitions", set())
    buffered: set[Any] = getattr(consumer, "_buffered_partitions", set())
    read: dict[Any, int | None] = getattr(consumer, "_read_offset", {})
    committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    client_paused = set(client.paused()) if client is not None else set()
    parts: dict[str, Any] = {}
    for tp in sorted(consumer.assignment()):
        position = highwater = None
        if client is not None:
            try:
                position = client._subscription.subscription.assignment.state_value(tp).position
                highwater = client.highwater(tp)
            except Exception:  # internals moved or mid-rebalance: report what we have
                pass
        parts[_tp_name(tp)] = {
            "fetching": tp in active,
            "paused": tp in paused,
            "buffer_full": tp in buffered,
            "client_paused": tp in client_paused,
            "read_offset": read.get(tp),
            "committed_offset": committed.get(tp),
            "position": position,
            "highwater": highwater,
        }
    return {
        "started": True,
        "flow_active": bool(getattr(consumer, "flow_active", True)),
        "rebalancing": bool(app.rebalancing),
        "in_recovery": bool(app.in_recovery),
        "partitions": parts,
        "standbys": standby_offsets(app),
    }


def standby_offsets(app: faust.App) -> dict[str, int | None]:
    """Per standby changelog partition, the last offset Faust's recovery has taken in.

    The client's position runs ahead of it (records fetched, not yet applied to the standby
    store); this is what a takeover would not have to replay.
    """
    recovery: Any = getattr(getattr(app, "tables", None), "recovery", None)
    offsets: dict[Any, int] = getattr(recovery, "standby_offsets", {})
    return {_tp_name(tp): offsets.get(tp) for tp in sorted(getattr(recovery, "standby_tps", ()))}


def register_diagnostics(app: faust.App) -> None:
    """Add `/debug/consumer` to the worker's web server."""

    @app.page(CONSUMER_PATH)
    async def debug_consumer(self: View, request: Request) -> Response:
        return self.json(consumer_snapshot(app))
