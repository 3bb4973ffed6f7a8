"""The ingest judge on the hostile corpus and on focused cases, with no broker and no registry.

Writer schemas come from an in-memory source built from `schemas/*.avsc` under fixed ids;
any other id is unknown, exactly as the registry answers a 404. Each outcome's record is
encoded with its topic's schema (as the agent's outputs do) and decoded back, so a record
that would not fit its schema fails here rather than on the broker.

The integration test (tests/integration/test_corpus.py) sees a corpus case's final topic;
the judge is the ingest stage only, so "admitted" here means forwarded to `metering` (the
meter stage admits: the corpus tenant's limits are generous and its policy the default).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from guardstream.config.catalog import cached_catalog
from guardstream.config.settings import Settings
from guardstream.ingest.judge import Judge
from guardstream.records import Ingress, Outcome, RawRecord
from guardstream.serde.avro import encode
from guardstream.serde.codec import Codec
from guardstream.serde.registry_errors import SchemaUnknown
from guardstream.serde.schemas import reader_schema
from guardstream.streams.topics import Topic
from tests import SCHEMA_DIR
from tests.corpus import hostile

REQUEST_ID = 1
USAGE_ID = 2
OUTPUT_IDS = {topic: 100 + i for i, topic in enumerate(Topic)}
# The repo's schemas/ folder, for writer schemas and (through the codec) reader schemas alike.
SETTINGS = Settings(topic_prefix="unit", schema_dir=SCHEMA_DIR)


class SchemaDirRegistry:
    """Writer schemas from the schema directory under fixed ids, in memory; any other id is
    unknown, as the registry answers a 404. Enough of a registry for `Codec` (its
    `SchemaSource`), with no server.
    """

    def __init__(self, ids: dict[int, str]) -> None:
        self._parsed = {i: reader_schema(stem, SCHEMA_DIR) for i, stem in ids.items()}
        self.asked: list[int] = []

    def lookup(self, subject: str, schema: str) -> int | None:
        raise AssertionError("the judge never looks schemas up by subject")

    def writer_schema(self, schema_id: int) -> Any:
        self.asked.append(schema_id)
        try:
            return self._parsed[schema_id]
        except KeyError:
            raise SchemaUnknown(f"schema id {schema_id} is not in the registry") from None

    def close(self) -> None:
        pass


def _make_judge() -> tuple[Judge, Codec, SchemaDirRegistry]:
    ids = {REQUEST_ID: "request", USAGE_ID: "usage"}
    ids.update({schema_id: topic.schema for topic, schema_id in OUTPUT_IDS.items()})
    registry = SchemaDirRegistry(ids)
    codec = Codec(SETTINGS, registry)
    codec.use_output_ids(OUTPUT_IDS)
    judge = Judge(
        codec,
        cached_catalog(SETTINGS.model_catalog),
        SETTINGS.max_record_bytes,
        record_budget_ms=SETTINGS.record_budget_ms,
    )
    return judge, codec, registry


JUDGE, CODEC, REGISTRY = _make_judge()


def _raw(
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
    *,
    topic: Topic = Topic.REQUESTS,
    offset: int = 7,
    key: bytes | None = b"k",
) -> RawRecord:
    return RawRecord(
        Ingress(SETTINGS.topic(topic), 3, offset, 1_700_000_000_000), key, value, headers
    )


def _record(out: Outcome) -> dict[str, Any]:
    """The outcome's record after a round trip through its topic's schema."""
    framed = CODEC.encode(out.topic, out.record)
    decoded: dict[str, Any] = CODEC.decode(framed, out.topic)
    return decoded


def _code(out: Outcome, record: dict[str, Any]) -> str | None:
    """The reason code as test_corpus.py reads it off the output record."""
    if out.topic == Topic.DEADLETTER:
        return str(record["error_code"])
    if out.topic == Topic.METERING:
        return None
    return str(record["reasons"][0]["code"]) if record["reasons"] else None


def _request(**changes: Any) -> bytes:
    return encode(REQUEST_ID, reader_schema("request", SCHEMA_DIR), hostile.request(**changes))


# --- the corpus ----------------------------------------------------------------------------


def _build_corpus() -> tuple[list[hostile.Case], Exception | None]:
    # Built at collection (the cases are parameters); a corpus that cannot be built must fail
    # one test with its error, not stop the focused tests below from running.
    try:
        return hostile.build(REQUEST_ID, USAGE_ID), None
    except Exception as exc:
        return [], exc


CASES, CORPUS_ERROR = _build_corpus()


def test_corpus_is_the_full_one() -> None:
    if CORPUS_ERROR is not None:
        pytest.fail(f"tests/corpus/hostile.py cannot build the corpus: {CORPUS_ERROR!r}")
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("offset", "case"), list(enumerate(CASES)), ids=[c.name for c in CASES])
def test_corpus_case(offset: int, case: hostile.Case) -> None:
    out = JUDGE.judge(_raw(case.value, case.headers, offset=offset))
    record = _record(out)
    want = ("metering", None) if case.topic == "admitted" else (case.topic, case.code)
    detail = record.get("error_detail") or record.get("reasons")
    assert (str(out.topic), _code(out, record)) == want, detail
    assert out.code == (case.code or "FORWARDED")
    for kind, count in case.findings.items():
        assert record["findings"].get(kind, 0) >= count, record["findings"]
    if out.topic != Topic.DEADLETTER:
        text = json.dumps(record, default=str, ensure_ascii=False)
        leaked = [secret for secret in case.must_not_contain if secret in text]
        assert not leaked, f"the output contains {leaked}"
    if out.topic == Topic.DEADLETTER:
        # The original record, byte for byte, so an operator can see what arrived.
        assert record["original_value"] == case.value
        assert record["original_topic"] == SETTINGS.topic(Topic.REQUESTS)
        assert record["stage"] == "ingest"


def test_valid_corpus_request_is_forwarded() -> None:
    out = JUDGE.judge(_raw(hostile.encode_valid(REQUEST_ID), hostile.headers("valid-1")))
    assert (out.topic, out.code, out.key) == (Topic.METERING, "FORWARDED", b"corpus")


# --- focused cases -------------------------------------------------------------------------


def test_valid_request_becomes_a_metering_record_keyed_by_tenant() -> None:
    out = JUDGE.judge(_raw(_request(), hostile.headers("req-1"), offset=11))
    record = _record(out)
    assert out.topic == Topic.METERING
    assert out.key == b"corpus" and out.tenant_id == "corpus"
    assert ("ce_requestid", b"req-1") in out.headers
    assert record["kind"] == "REQUEST"
    assert record["request_id"] == "req-1"
    assert record["request_source"] == "/tests/corpus"
    assert (record["ingress_topic"], record["ingress_partition"], record["ingress_offset"]) == (
        SETTINGS.topic(Topic.REQUESTS),
        3,
        11,
    )
    assert record["estimated_input_tokens"] > 0
    assert record["sanitized_request"]["model"] == "gpt-4o-mini"


def test_same_record_same_outcome() -> None:
    rec = _raw(_request(messages=hostile.user("mail me at a.b@example.com")), hostile.headers("d"))
    first, second = JUDGE.judge(rec), JUDGE.judge(rec)
    assert first == second
    assert CODEC.encode(first.topic, first.record) == CODEC.encode(second.topic, second.record)


def test_oversize_binary_record_is_rejected_to_its_sender() -> None:
    small = dataclasses.replace(JUDGE, max_record_bytes=200)
    value = _request(messages=hostile.user("x" * 500))
    out = small.judge(_raw(value, hostile.headers("big-1")))
    record = _record(out)
    assert (out.topic, out.code) == (Topic.REJECTED, "PAYLOAD_TOO_LARGE")
    assert record["request_id"] == "big-1"  # binary mode: the headers name who to answer
    assert "limit is 200 bytes" in record["reasons"][0]["detail"]
    # One byte under the limit is judged normally.
    roomy = dataclasses.replace(JUDGE, max_record_bytes=len(value))
    assert roomy.judge(_raw(value, hostile.headers("big-2"))).topic == Topic.METERING


def test_oversize_structured_record_is_dead_lettered() -> None:
    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "s-big",
            "source": "/tests",
            "type": Topic.REQUESTS.ce_type,
            "data": hostile.request(messages=hostile.user("x" * 500)),
        }
    ).encode()
    small = dataclasses.replace(JUDGE, max_record_bytes=200)
    out = small.judge(_raw(body, [("content-type", b"application/cloudevents+json")]))
    # The attributes are inside the oversize value: there is nobody to answer.
    assert (out.topic, out.code) == (Topic.DEADLETTER, "PAYLOAD_TOO_LARGE")
    assert _record(out)["original_value"] == body


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"\x01\x00\x00\x00\x01abc", "AVRO_FRAMING_INVALID"),
        (b"\x00\x00", "AVRO_FRAMING_INVALID"),
        (b"", "VALUE_MISSING"),
        (None, "VALUE_MISSING"),
    ],
)
def test_bad_framing_is_dead_lettered_with_the_original_record(
    value: bytes | None, code: str
) -> None:
    hdrs = hostile.headers("frame-1")
    out = JUDGE.judge(_raw(value, hdrs, key=b"the-key", offset=42))
    record = _record(out)
    assert (out.topic, out.code) == (Topic.DEADLETTER, code)
    assert out.key == b"the-key"
    assert record["original_value"] == value
    assert record["original_key"] == b"the-key"
    assert record["original_offset"] == 42
    assert record["original_headers"] == [{"key": k, "value": v} for k, v in hdrs]


def test_unknown_schema_id_is_dead_lettered_after_asking_the_registry() -> None:
    value = b"\x00\x00\x00\x30\x39" + _request()[5:]  # schema id 12345
    out = JUDGE.judge(_raw(value, hostile.headers("unk-1")))
    assert (out.topic, out.code) == (Topic.DEADLETTER, "SCHEMA_UNKNOWN")
    assert "12345" in _record(out)["error_detail"]
    assert 12345 in REGISTRY.asked


def test_known_writer_schema_of_another_type_does_not_decode_as_a_request() -> None:
    value = encode(USAGE_ID, reader_schema("usage", SCHEMA_DIR), _usage())
    out = JUDGE.judge(_raw(value, hostile.headers("wrong-schema")))
    assert (out.topic, out.code) == (Topic.DEADLETTER, "AVRO_DECODE_FAILED")


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/json; charset=utf-8"])
def test_wrong_content_type_is_rejected_naming_the_header(content_type: bytes) -> None:
    out = JUDGE.judge(_raw(_request(), hostile.headers("ct-1", content_type=content_type)))
    record = _record(out)
    assert (out.topic, out.code) == (Topic.REJECTED, "CONTENT_TYPE_UNSUPPORTED")
    assert record["request_id"] == "ct-1"
    assert record["reasons"][0]["field"] == "content-type"


@pytest.mark.parametrize("content_type", [b"application/avro", b"avro/binary", b"APPLICATION/AVRO"])
def test_avro_content_types_are_accepted(content_type: bytes) -> None:
    out = JUDGE.judge(_raw(_request(), hostile.headers("ct-ok", content_type=content_type)))
    assert out.topic == Topic.METERING


def _usage(**changes: Any) -> dict[str, Any]:
    base = {
        "request_id": "req-9",
        "tenant_id": "acme",
        "model": "gpt-4o-mini",
        "input_tokens": 120,
        "output_tokens": 30,
    }
    return {**base, **changes}


def _usage_headers(event_id: str) -> list[tuple[str, bytes | None]]:
    return hostile.headers(event_id, ce_type=str(Topic.USAGE.ce_type).encode())


def test_usage_report_is_forwarded_to_metering() -> None:
    value = encode(USAGE_ID, reader_schema("usage", SCHEMA_DIR), _usage())
    out = JUDGE.judge(_raw(value, _usage_headers("u-1"), topic=Topic.USAGE))
    record = _record(out)
    assert (out.topic, out.code, out.key) == (Topic.METERING, "FORWARDED", b"acme")
    assert record["kind"] == "USAGE"
    assert record["request_id"] == "req-9"  # the request it settles, not the event's id
    assert (record["usage_input_tokens"], record["usage_output_tokens"]) == (120, 30)
    assert record["ingress_topic"] == SETTINGS.topic(Topic.USAGE)
    assert record["sanitized_request"] is None


def test_usage_topic_refuses_the_request_event_type() -> None:
    value = encode(USAGE_ID, reader_schema("usage", SCHEMA_DIR), _usage())
    out = JUDGE.judge(_raw(value, hostile.headers("u-2"), topic=Topic.USAGE))
    assert (out.topic, out.code) == (Topic.REJECTED, "CE_TYPE_UNSUPPORTED")


def test_usage_with_a_request_body_is_dead_lettered() -> None:
    out = JUDGE.judge(_raw(_request(), _usage_headers("u-3"), topic=Topic.USAGE))
    assert (out.topic, out.code) == (Topic.DEADLETTER, "AVRO_DECODE_FAILED")


def test_invalid_usage_payload_is_rejected() -> None:
    value = encode(USAGE_ID, reader_schema("usage", SCHEMA_DIR), _usage(input_tokens=-1))
    out = JUDGE.judge(_raw(value, _usage_headers("u-4"), topic=Topic.USAGE))
    assert (out.topic, out.code) == (Topic.REJECTED, "PAYLOAD_INVALID")
    assert out.tenant_id == "acme"
