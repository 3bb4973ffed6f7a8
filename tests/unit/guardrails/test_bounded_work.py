"""Work per record is bounded: every ingest step is linear in the record's size.

The judge runs the same text at two sizes; linear work keeps the time per KB flat (ratio ≈ 4
for 4x the text) where a quadratic step shows ≈ 16. The bound asserted (10) sits between the
two, with room for a noisy shared machine. The budget test proves the last line of defence:
a record still working when its time is spent is refused, not left to stall a partition.
"""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardstream.config.settings import Settings
from guardstream.guardrails.hygiene import MAX_NON_STARTERS, non_starters, normalize_text
from guardstream.ops.bench import (
    WORST_POLICY,
    OfflineIngest,
    offline_judge,
    request_record,
    time_family,
)
from guardstream.ops.hostile_text import FAMILIES, fill
from guardstream.reasons import Reason
from guardstream.serde.avro import decode_body, split_frame
from guardstream.serde.schemas import reader_schema
from tests import SCHEMA_DIR

SMALL, LARGE = 16_384, 65_536
# Far above the worst family measured (~5 ms/KB, phone-number validation) and far below
# what a quadratic step costs at these sizes.
MAX_US_PER_KB = 25_000


@pytest.fixture(scope="module")
def judge() -> OfflineIngest:
    j = offline_judge(Settings(), WORST_POLICY, record_budget_ms=10**9)
    time_family(j, "warm up ", 1024)
    return j


def _assert_linear(judge: OfflineIngest, unit: str) -> None:
    # The fastest of five runs: other processes on a shared machine only ever add time.
    small, _ = time_family(judge, unit, SMALL, repeats=5)
    large, _ = time_family(judge, unit, LARGE, repeats=5)
    kb = len(fill(unit, LARGE).encode()) / 1024
    assert large * 1e6 / kb < MAX_US_PER_KB, f"{large * 1e3:.0f} ms for {kb:.0f} KB"
    # 2 ms of slack: tiny timings are mostly noise.
    assert large < 10 * small + 0.002, (
        f"{small * 1e3:.1f} ms → {large * 1e3:.1f} ms for 4x the text"
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_adversarial_family_costs_linear_time(judge: OfflineIngest, family: str) -> None:
    _assert_linear(judge, FAMILIES[family])


# Pieces an attacker would combine: marks of several combining classes (BMP and astral),
# tag and address punctuation, key prefixes, digits, invisible and wide characters.
_PIECES = [
    "\u0301",
    "\u0316",
    "\u0334",
    "\u059a",
    "\u05c4",
    "\u0327",
    "\U0001d165",
    "\U0001d17b",
    "\uff9e",
    "\u0f73",
    "<",
    ">",
    "<script>",
    "</",
    "@",
    ".",
    ":",
    "-",
    "[at]",
    "(dot)",
    "=",
    "/",
    "+",
    "%4",
    "1",
    "9",
    "0",
    " ",
    "\n",
    "\t",
    "\u200b",
    "a",
    "Z",
    "日",
    "AKIA",
    "sk-",
    "eyJ",
    "Bearer ",
    "-----BEGIN ",
    "secret=",
    "ignore previous",
    "GB82",
    "::",
    "\u00a0",
]


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=10).map("".join))
def test_fuzzed_hostile_text_costs_linear_time(judge: OfflineIngest, unit: str) -> None:
    _assert_linear(judge, unit)


def test_a_letter_with_250k_mixed_marks_is_cut_to_the_stream_safe_limit() -> None:
    text = fill(FAMILIES["mixed combining marks"], 250_001)
    start = time.perf_counter()
    cleaned = normalize_text(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0  # was over a minute: normalisation reordered the run quadratically
    assert len(cleaned) <= 1 + MAX_NON_STARTERS
    assert unicodedata.is_normalized("NFKC", cleaned)


def test_the_250k_mark_prompt_passes_the_judge_without_stalling(judge: OfflineIngest) -> None:
    seconds, code = time_family(judge, FAMILIES["mixed combining marks"], 250_001, repeats=1)
    assert code == "FORWARDED"
    assert seconds < 2.0


def test_short_runs_of_marks_are_kept() -> None:
    assert normalize_text("e\u0301\u0327 and Zalgo\u0301\u0316") == unicodedata.normalize(
        "NFKC", "e\u0301\u0327 and Zalgo\u0301\u0316"
    )


def test_non_starters_exist_only_below_the_scanned_range() -> None:
    # The hygiene pattern scans code points below U+20000; this proves nothing above has a
    # combining class or decomposes to a mark, on this Python's Unicode version.
    for c in range(0x20000, 0x110000):
        assert not unicodedata.combining(chr(c)), hex(c)
    assert len(non_starters()) > 900


def test_a_record_over_its_time_budget_is_refused_with_the_step_named() -> None:
    judge, codec = offline_judge(Settings(), WORST_POLICY, record_budget_ms=50)
    phones = fill(FAMILIES["phone-like numbers"], 65_536)
    rec = request_record(7, [{"role": "user", "content": phones} for _ in range(4)])
    out = judge.judge(rec)
    assert (out.topic, out.code) == ("rejected", Reason.PROCESSING_BUDGET_EXCEEDED)
    assert out.tenant_id == "tenant-7"
    decision = decode_body(
        split_frame(codec.encode(out.topic, out.record))[1],
        reader_schema("decision", SCHEMA_DIR),
        None,
    )
    (reason,) = decision["reasons"]
    assert "50 ms" in reason["detail"] and "messages[" in reason["detail"]


def test_an_ordinary_record_is_not_refused_by_the_default_budget() -> None:
    judge, _registry = offline_judge(Settings(), WORST_POLICY)
    rec = request_record(1, [{"role": "user", "content": "Summarise this ticket " * 40}])
    assert judge.judge(rec).code == "FORWARDED"
