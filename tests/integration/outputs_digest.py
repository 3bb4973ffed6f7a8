"""Every output byte the ingest judge and the meter step produce for a fixed input, as digests.

Run as `python -m tests.integration.outputs_digest` with a session's GUARDSTREAM_* settings
(test_determinism.py runs it under different hash seeds and compares). The writer schemas
come from the real registry; nothing else needs the broker, so each output is exactly what
a worker would send, without scheduling or timing in the way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from guardstream.agents.meter import step_outcomes
from guardstream.config.catalog import cached_catalog
from guardstream.config.settings import Settings
from guardstream.config.tenants import load_tenants_file, load_tiers
from guardstream.guardrails import DEFAULT_POLICY
from guardstream.ingest.judge import Judge
from guardstream.metering import step as metering
from guardstream.ops.bench import WORST_POLICY
from guardstream.ops.hostile_text import FAMILIES, fill
from guardstream.records import Ingress, Outcome, Position, RawRecord
from guardstream.serde.avro import encode
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import reader_schema, schema_text
from guardstream.streams.topics import USAGE_TYPE, Topic, subject_for
from tests import SCHEMA_DIR
from tests.corpus import hostile

T0 = 1_790_000_000_000


def _digest(codec: Codec, out: Outcome) -> str:
    h = hashlib.sha256()
    for part in (out.topic.encode(), out.key or b"-", codec.encode(out.topic, out.record)):
        h.update(len(part).to_bytes(8, "big") + part)
    for k, v in out.headers:
        h.update(k.encode() + b"=" + v + b";")
    return f"{out.topic}:{out.code}:{h.hexdigest()[:16]}"


def _inputs(settings: Settings, request_id: int, usage_id: int) -> list[RawRecord]:
    topic = settings.topic("requests")
    raws: list[tuple[bytes | None, list[tuple[str, bytes | None]]]] = [
        (c.value, c.headers) for c in hostile.build(request_id, usage_id)
    ]
    for i, unit in enumerate(FAMILIES.values()):
        value = encode(
            request_id,
            reader_schema("request", SCHEMA_DIR),
            hostile.request(messages=hostile.user(fill(unit, 2048))),
        )
        raws.append((value, hostile.headers(f"family-{i}")))
    for i in range(40):  # valid requests across tenants, some with PII, one resent
        tenant = ("acme", "initech", "corpus")[i % 3]
        text = f"message {i}: write to jane{i % 4}@example.com or call +1 415 555 013{i % 10}"
        data = hostile.request(tenant_id=tenant, messages=hostile.user(text))
        raws.append(
            (
                encode(request_id, reader_schema("request", SCHEMA_DIR), data),
                hostile.headers(f"r-{i % 39}"),
            )
        )
    out = [
        RawRecord(Ingress(topic, 0, i, T0 + i), b"k", value, headers)
        for i, (value, headers) in enumerate(raws)
    ]
    usage_topic = settings.topic("usage")
    for i in range(10):  # usage for some of the valid requests above, and one unknown
        value = encode(
            usage_id,
            reader_schema("usage", SCHEMA_DIR),
            {
                "request_id": f"r-{i}",
                "tenant_id": "acme",
                "model": "gpt-4o-mini",
                "input_tokens": 10 + i,
                "output_tokens": 5,
            },
        )
        headers = hostile.headers(f"u-{i}")
        headers = [(k, USAGE_TYPE.encode() if k == "ce_type" else v) for k, v in headers]
        out.append(RawRecord(Ingress(usage_topic, 0, i, T0 + 10_000 + i), b"acme", value, headers))
    return out


def main() -> None:
    """Print one JSON list: a digest per output, in the order they were produced."""
    settings = Settings()
    registry = Registry(settings)
    codec = Codec(settings, registry)
    codec.resolve_output_ids()
    request_id = registry.lookup(
        subject_for(settings, "requests"), schema_text("request", SCHEMA_DIR)
    )
    usage_id = registry.lookup(subject_for(settings, "usage"), schema_text("usage", SCHEMA_DIR))
    assert request_id is not None and usage_id is not None
    catalog = cached_catalog(settings.model_catalog)
    tiers = load_tiers(settings.tiers_file)
    configs = {
        c.tenant_id: c for c in load_tenants_file(Path(__file__).parent / "tenants.yaml", tiers)
    }
    digests: list[str] = []
    for policy in (DEFAULT_POLICY, WORST_POLICY):
        # No time budget: whether a record runs over one depends on the machine, not the input.
        judge = Judge(codec, catalog, settings.max_record_bytes, lambda _t, p=policy: p, 10**9)
        states: dict[str, metering.TenantState] = {}
        table: dict[bytes, bytes] = {}
        for n, rec in enumerate(_inputs(settings, request_id, usage_id)):
            out = judge.judge(rec)
            digests.append(_digest(codec, out))
            if out.topic != "metering":
                continue
            record: dict[str, Any] = codec.decode(
                codec.encode(out.topic, out.record), Topic.METERING
            )
            tenant = record["tenant_id"]
            step = metering.step(
                states.get(tenant, metering.TenantState()),
                record,
                Position(1, n, T0 + 60_000 + 50 * n),
                metering.limits(tenant, configs.get(tenant), tiers),
                catalog,
                table.get,
            )
            for key, value in step.writes.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
            states[tenant] = metering.TenantState.from_bytes(step.state.to_bytes())
            digests += [_digest(codec, o) for o in step_outcomes(step, record, out.key)]
        digests.append(
            hashlib.sha256(
                json.dumps(sorted((k.hex(), v.hex()) for k, v in table.items())).encode()
            ).hexdigest()
        )
    registry.close()
    print(json.dumps(digests))


if __name__ == "__main__":
    main()
