"""`GET /tenants/{tenant_id}/state` on the worker's web port: a tenant's live spend and buckets.

The tenant state has one writer, the worker owning the tenant's partition of `metering`, and
only that worker's RocksDB holds it. Any worker answers the URL: Faust's table router looks
up which worker the partition is assigned to and forwards the request to it (its
canonical URL, see `guardstream.app`); the owner reads its table and answers.

Routing key: the meter writes a tenant's entries to the changelog partition of the metering
record it is processing, and metering records are keyed by the tenant id's bytes. The
changelog has as many partitions as `metering` and Faust hashes keys the same way (murmur2),
so hashing the tenant id (not the state's table key, `s<US>tenant`, which hashes elsewhere)
names the partition that holds the state.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import faust
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from guardstream.config.tenants import Tiers
from guardstream.ingest.payload import TENANT_PATTERN
from guardstream.metering import keys
from guardstream.metering import step as metering
from guardstream.metering.view import TENANT_STATE_PATH, UnknownTenantError, tenant_view
from guardstream.runtime.health import readiness
from guardstream.tables.definitions import Tables

log = logging.getLogger(__name__)
_TENANT = re.compile(TENANT_PATTERN)
_Handler = Callable[..., Awaitable[Response]]


def local_view(
    tables: Tables, tiers: Tiers, tenant_id: str, now_ms: int, answered_by: str
) -> dict[str, Any]:
    """The view from this worker's own table (the caller made sure it owns the tenant)."""
    raw = tables.meter.get(keys.state_key(tenant_id))
    state = None if raw is None else metering.TenantState.from_bytes(raw)
    last_ms = None
    if state is not None and state.q_next > 0:
        # The newest journal entry is written with the state and never collected before a
        # newer one exists, so it carries the time of the last record applied.
        entry = tables.meter.get(keys.journal_key(tenant_id, state.q_next - 1))
        last_ms = None if entry is None else int(json.loads(entry)["ts"])
    lim = metering.limits(tenant_id, tables.tenant_config(tenant_id), tiers)
    return tenant_view(
        tenant_id, state, lim, now_ms, last_metered_ms=last_ms, answered_by=answered_by
    )


def register_tenant_page(app: faust.App, tables: Tables, tiers: Tiers) -> None:
    """Add `/tenants/{tenant_id}/state` to the app (routed to the owning worker)."""
    changelog = tables.meter.changelog_topic.get_topic_name()
    me = str(app.conf.canonical_url)

    async def know_changelog_partitions() -> None:
        # Faust's router hashes the key with the producer's partitioner, which needs the
        # changelog's partition count in the producer's metadata; a worker that has not yet
        # written to the changelog may not have it (the router then fails with a TypeError).
        producer: Any = app.producer
        try:
            await producer._ensure_producer().partitions_for(changelog)
        except Exception:  # a Faust/aiokafka internal moved: the router may still manage
            log.debug("could not load %s's partitions into the producer", changelog, exc_info=True)

    def unavailable(reason: str, detail: str) -> dict[str, Any]:
        return {"error": detail, "reasons": [reason], "answered_by": me}

    # Faust types a routed handler as (view, request) only; ours takes the path parameter too.
    to_owner = cast(
        Callable[[_Handler], _Handler],
        app.table_route(table=tables.meter, match_info="tenant_id"),
    )

    @app.page(TENANT_STATE_PATH)
    class TenantStateView(View):
        """A tenant's spend, reservations, remaining budget and bucket levels, live."""

        async def get(self, request: Request, tenant_id: str) -> Response:
            if not _TENANT.match(tenant_id):
                return self.json(
                    {"error": f"'{tenant_id}' is not a valid tenant id", "answered_by": me},
                    status=400,
                )
            ready = readiness(app)
            if not ready.ready:
                return self.json(
                    {
                        "error": "this worker is not ready; try again shortly",
                        "reasons": ready.reasons,
                        "answered_by": me,
                    },
                    status=503,
                )
            if not tables.tenants.ready.is_set():
                return self.json(
                    unavailable("tenant_directory_loading", "tenant configuration still loading"),
                    status=503,
                )
            try:
                await know_changelog_partitions()
                return await self.routed(request, tenant_id=tenant_id)
            except ServiceUnavailable:
                # The assignor has no owner for the partition (assignment not yet known).
                return self.json(
                    unavailable("owner_unknown", "no worker owns this tenant's partition yet"),
                    status=503,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return self.json(
                    unavailable("owner_unreachable", f"the owning worker did not answer: {exc!r}"),
                    status=503,
                )

        @to_owner
        async def routed(self, request: Request, tenant_id: str) -> Response:
            # The decorator forwards unless the assignment names this worker. Check that it
            # holds the partition as active, not only as a standby copy (which the store
            # would also read, possibly stale): assignments can move between the two looks.
            tp = app.producer.key_partition(changelog, tenant_id.encode())
            if tp not in app.assignor.assigned_actives():
                return self.json(
                    unavailable("not_owner", "this tenant's partition moved; try again"),
                    status=503,
                )
            now_ms = int(time.time() * 1000)
            try:
                body = local_view(tables, tiers, tenant_id, now_ms, me)
            except UnknownTenantError as exc:
                return self.json(
                    {"error": str(exc), "tenant_id": tenant_id, "answered_by": me}, status=404
                )
            return self.json(body)

    log.debug("%s registered as %s", TENANT_STATE_PATH, TenantStateView.__name__)
