"""JSON log lines, request/trace correlation through context variables, W3C traceparent."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime

import pytest

from guardstream.runtime.logs import (
    JsonFormatter,
    configure_json_logging,
    current_request_id,
    current_trace_id,
    json_logging_config,
    log_context,
    trace_id_from_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf = io.StringIO()
    configure_json_logging("DEBUG", stream=buf)
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_base_keys(captured: io.StringIO) -> None:
    logging.getLogger("guardstream.test").warning("two\nlines %s", "here")
    [rec] = lines(captured)
    assert rec["level"] == "warning"
    assert rec["logger"] == "guardstream.test"
    assert rec["message"] == "two\nlines here"
    ts = datetime.fromisoformat(str(rec["ts"]))
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert "request_id" not in rec and "trace_id" not in rec


def test_context_adds_ids_and_is_undone_after_the_block(captured: io.StringIO) -> None:
    log = logging.getLogger("guardstream.test")
    with log_context(request_id="req-1", traceparent=TRACEPARENT):
        log.info("inside")
        with log_context(request_id="req-2"):
            log.info("nested")
    log.info("outside")
    inside, nested, outside = lines(captured)
    assert (inside["request_id"], inside["trace_id"]) == ("req-1", TRACE)
    assert (nested["request_id"], nested["trace_id"]) == ("req-2", TRACE)
    assert "request_id" not in outside and "trace_id" not in outside
    assert current_request_id() is None and current_trace_id() is None


def test_context_is_reset_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), log_context(request_id="boom"):
        raise RuntimeError("x")
    assert current_request_id() is None


def test_concurrent_tasks_do_not_see_each_others_ids(captured: io.StringIO) -> None:
    log = logging.getLogger("guardstream.test")

    async def handle(rid: str) -> None:
        with log_context(request_id=rid):
            await asyncio.sleep(0.01)
            log.info("done")

    async def main() -> None:
        await asyncio.gather(*(handle(f"r{i}") for i in range(5)))

    asyncio.run(main())
    ours = [r for r in lines(captured) if r["logger"] == "guardstream.test"]
    assert sorted(str(r["request_id"]) for r in ours) == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT, TRACE),
        (TRACEPARENT.upper(), TRACE),
        (f"  {TRACEPARENT} ", TRACE),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id is invalid
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id is invalid
        (f"ff-{TRACE}-00f067aa0ba902b7-01", None),  # version ff is forbidden
        (f"00-{TRACE[:-1]}-00f067aa0ba902b7-01", None),
        ("not a traceparent", None),
        ("", None),
        (None, None),
    ],
)
def test_trace_id_is_the_second_field_of_a_valid_traceparent(
    header: str | None, expected: str | None
) -> None:
    assert trace_id_from_traceparent(header) == expected


def test_allow_listed_extras_are_kept_and_others_dropped(captured: io.StringIO) -> None:
    logging.getLogger("g").info(
        "rejected", extra={"reason": "PII_BLOCKED", "partition": 3, "prompt": "my SSN is ..."}
    )
    [rec] = lines(captured)
    assert rec["reason"] == "PII_BLOCKED" and rec["partition"] == 3
    assert "prompt" not in rec and "my SSN" not in captured.getvalue()


def test_exceptions_are_kept_on_the_same_line(captured: io.StringIO) -> None:
    try:
        raise ValueError("bad schema id")
    except ValueError:
        logging.getLogger("g").exception("decode failed")
    [rec] = lines(captured)  # the traceback did not break the one-line framing
    assert rec["exc_type"] == "ValueError" and "bad schema id" in str(rec["exc"])


def test_configuring_twice_does_not_duplicate_lines(captured: io.StringIO) -> None:
    configure_json_logging(logging.INFO, stream=captured)
    logging.getLogger("g").debug("hidden at INFO")
    logging.getLogger("g").info("once")
    assert [r["message"] for r in lines(captured)] == ["once"]


def test_formatter_is_usable_on_its_own() -> None:
    record = logging.LogRecord("n", logging.ERROR, __file__, 1, "m %d", (1,), None)
    assert json.loads(JsonFormatter().format(record))["message"] == "m 1"


def test_dict_config_for_frameworks_logs_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logging.config.dictConfig(json_logging_config("warning"))
        with log_context(traceparent=TRACEPARENT):
            logging.getLogger("faust.worker").warning("rebalance done")
        logging.getLogger("faust.worker").info("below the level")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    [rec] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (rec["logger"], rec["trace_id"], rec["level"]) == ("faust.worker", TRACE, "warning")
