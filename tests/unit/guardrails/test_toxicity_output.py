"""Toxicity scoring, its tenant policy on prompts, and the output guard for answers.

The detector tests run the real model (it ships in the package; the first test to score
pays its ~1.6 s load once). Policy-mode, stream and bounded-work tests use a stand-in
scorer that counts its calls, so they assert the amount of work, never wall-clock time.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardstream.dispatch.codes import CompletionCode
from guardstream.guardrails import (
    Deadline,
    Policy,
    PolicyError,
    StreamGuard,
    apply_policy,
    guard_completion,
    policy_from,
    score_toxicity,
    toxicity,
)
from guardstream.guardrails import output as output_mod
from guardstream.guardrails import policy as policy_mod
from guardstream.guardrails.output import HOLD, MAX_HELD, STEP, STRIDE
from guardstream.reasons import Reason
from guardstream.streams.topics import Topic
from tests.corpus import hostile
from tests.unit.ingest.test_judge import JUDGE, _raw, _record, _request

CLEAN = [
    "Could you summarise the attached quarterly report in three bullet points?",
    "Thanks, the meeting is moved to Thursday at ten.",
    "Please translate this paragraph into French.",
]
TOXIC = [
    "you are a fucking idiot",
    "shut the fuck up, you worthless piece of shit",
    "I hate you, you stupid bitch",
]


class CountingScorer:
    """A stand-in model: 1.0 for any window holding `BAD`, else 0.0; counts its work."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.max_rows = 0

    def __call__(self, texts: Sequence[str]) -> list[float]:
        self.calls += 1
        self.rows += len(texts)
        self.max_rows = max(self.max_rows, len(texts))
        return [1.0 if "BAD" in t else 0.0 for t in texts]


# --- the detector -----------------------------------------------------------------------


@pytest.mark.parametrize("text", CLEAN)
def test_clean_sentences_score_low(text: str) -> None:
    assert score_toxicity(text).score < 0.3


@pytest.mark.parametrize("text", TOXIC)
def test_toxic_sentences_score_high(text: str) -> None:
    assert score_toxicity(text).score >= 0.8


def test_one_insult_in_a_long_clean_text_is_still_found() -> None:
    # Scored whole, a linear model would dilute it; the highest window's score does not.
    filler = " ".join(CLEAN) + " "
    text = filler * 40 + TOXIC[0] + ". " + filler * 40
    result = score_toxicity(text)
    assert result.windows > 1 and result.score >= 0.8


def test_empty_or_blank_text_scores_zero_without_the_model() -> None:
    scorer = CountingScorer()
    assert score_toxicity("  \n ", scorer=scorer) == toxicity.ToxicityResult(0.0, 0)
    assert scorer.calls == 0


def test_the_model_loads_once_and_not_at_import() -> None:
    code = (
        "import sys, guardstream.guardrails, guardstream.ingest.judge\n"
        "assert 'sklearn' not in sys.modules and 'profanity_check' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    toxicity.preload()
    assert toxicity.loaded() and toxicity.preload() == 0.0


@pytest.mark.parametrize("size", [0, 1, 95, 96, 97, 5_000, 65_568, 65_569, 1_000_000])
def test_windows_cover_every_character_within_the_cap(size: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(size))
    parts = toxicity.windows(text)
    assert len(parts) <= toxicity.MAX_WINDOWS
    # Rebuild the coverage from positions: every character is in one window or two.
    step = len(parts[0]) - toxicity.OVERLAP if len(parts) > 1 else 0
    covered = bytearray(size)
    for i, part in enumerate(parts):
        start = i * step
        assert text[start : start + len(part)] == part
        for j in range(start, start + len(part)):
            covered[j] += 1
    assert all(1 <= c <= 2 for c in covered)


def test_scoring_huge_text_is_one_call_of_bounded_rows() -> None:
    scorer = CountingScorer()
    text = "lorem ipsum " * 100_000 + "BAD"  # ~1.2 MB, the toxic bit at the very end
    result = score_toxicity(text, scorer=scorer)
    assert result.score == 1.0  # every character is still scored
    assert scorer.calls == 1 and scorer.rows == result.windows <= toxicity.MAX_WINDOWS


# --- the tenant policy on prompts -----------------------------------------------------------


def test_policy_reads_toxicity_settings_from_the_tenant_map() -> None:
    policy = policy_from({"toxicity": "block", "toxicity_threshold": "0.5"})
    assert (policy.toxicity, policy.toxicity_threshold) == ("block", 0.5)
    assert (Policy().toxicity, Policy().toxicity_threshold) == ("allow", 0.8)
    with pytest.raises(PolicyError, match=r"policy\.toxicity"):
        policy_from({"toxicity": "redact"})
    with pytest.raises(PolicyError, match=r"policy\.toxicity_threshold"):
        policy_from({"toxicity_threshold": "1.5"})


def test_allow_never_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kw: object) -> None:
        raise AssertionError("scored under toxicity: allow")

    monkeypatch.setattr(policy_mod, "score_toxicity", refuse)
    out = apply_policy([("user", TOXIC[0])], Policy())
    assert out.blocked is None and out.toxicity_score is None


def test_block_refuses_a_toxic_prompt_naming_the_score_not_the_text() -> None:
    out = apply_policy([("user", "hello"), ("user", TOXIC[1])], Policy(toxicity="block"))
    assert out.blocked == Reason.TOXICITY_BLOCKED
    assert out.blocked_detail is not None and "fuck" not in out.blocked_detail
    assert "threshold 0.80" in out.blocked_detail


def test_flag_admits_with_a_toxicity_finding_and_still_redacts() -> None:
    out = apply_policy([("user", f"mail a@example.com, {TOXIC[0]}")], Policy(toxicity="flag"))
    assert out.blocked is None
    assert out.findings == {"EMAIL": 1, "TOXICITY": 1}
    assert "[EMAIL_1]" in out.messages[0][1]
    assert out.toxicity_score is not None and out.toxicity_score >= 0.8


def test_threshold_decides() -> None:
    clean = [("user", CLEAN[0])]
    assert apply_policy(clean, Policy(toxicity="block")).blocked is None
    assert apply_policy(clean, Policy(toxicity="block", toxicity_threshold=0.0)).blocked == (
        "TOXICITY_BLOCKED"
    )
    high = Policy(toxicity="block", toxicity_threshold=1.0)
    assert apply_policy([("user", "hello there")], high).blocked is None


def test_the_model_load_is_not_charged_to_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_load() -> float:
        time.sleep(0.3)  # a first load, longer than this record's whole budget
        return 0.3

    monkeypatch.setattr(policy_mod, "preload", slow_load)
    monkeypatch.setattr(policy_mod, "score_toxicity", lambda _t: toxicity.ToxicityResult(0, 1))
    out = apply_policy([("user", "hi")], Policy(toxicity="flag"), deadline=Deadline.after(200))
    assert out.blocked is None and out.toxicity_score == 0


def test_judge_rejects_a_toxic_prompt_under_block() -> None:
    judge = dataclasses.replace(JUDGE, policy_for=lambda _t: Policy(toxicity="block"))
    out = judge.judge(_raw(_request(messages=hostile.user(TOXIC[0])), hostile.headers("t-1")))
    record = _record(out)
    assert (out.topic, out.code) == (Topic.REJECTED, "TOXICITY_BLOCKED")
    assert TOXIC[0] not in record["reasons"][0]["detail"]


def test_judge_forwards_a_flagged_prompt_with_the_flag() -> None:
    judge = dataclasses.replace(JUDGE, policy_for=lambda _t: Policy(toxicity="flag"))
    out = judge.judge(_raw(_request(messages=hostile.user(TOXIC[0])), hostile.headers("t-2")))
    assert out.topic == Topic.METERING
    assert _record(out)["findings"] == {"TOXICITY": 1}
    clean = judge.judge(_raw(_request(messages=hostile.user(CLEAN[0])), hostile.headers("t-3")))
    assert _record(clean)["findings"] == {}


# --- whole answers --------------------------------------------------------------------------

ANSWER = "Write to jane.doe@example.com or call +1 415 555 0100; card 4111 1111 1111 1111."


def test_answer_is_redacted_like_a_prompt() -> None:
    verdict = guard_completion(ANSWER, Policy())
    prompt = apply_policy([("assistant", ANSWER)], Policy())
    assert verdict.text == prompt.messages[0][1]
    assert "[EMAIL_1]" in verdict.text and "[CARD_1]" in verdict.text
    assert verdict.findings == {"EMAIL": 1, "PHONE": 1, "CARD": 1}
    assert verdict.blocked is None and verdict.toxicity_score is None and verdict.flags == ()


def test_answer_with_a_blocked_kind_is_withheld() -> None:
    verdict = guard_completion(ANSWER, Policy(card="block"))
    assert (verdict.blocked, verdict.text) == ("OUTPUT_PII_BLOCKED", "")
    assert verdict.blocked_detail is not None and "4111" not in verdict.blocked_detail
    # Secrets are blocked by default, as in prompts.
    key = "here: sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
    assert guard_completion(key, Policy()).blocked == "OUTPUT_PII_BLOCKED"


def test_answer_toxicity_modes() -> None:
    scorer = CountingScorer()
    flagged = guard_completion("this is BAD", Policy(toxicity="flag"), scorer=scorer)
    assert (flagged.text, flagged.flags, flagged.blocked) == ("this is BAD", ("TOXICITY",), None)
    blocked = guard_completion("this is BAD", Policy(toxicity="block"), scorer=scorer)
    assert (blocked.text, blocked.blocked) == ("", "OUTPUT_TOXICITY_BLOCKED")
    fine = guard_completion("this is fine", Policy(toxicity="block"), scorer=scorer)
    assert (fine.blocked, fine.toxicity_score) == (None, 0.0)
    assert (
        CompletionCode.OUTPUT_TOXICITY_BLOCKED and CompletionCode.OUTPUT_PII_BLOCKED
    )  # catalogued codes


def test_answer_toxicity_with_the_real_model() -> None:
    verdict = guard_completion(f"Sure. {TOXIC[1]}", Policy(toxicity="block"))
    assert verdict.blocked == "OUTPUT_TOXICITY_BLOCKED"
    assert guard_completion(CLEAN[1], Policy(toxicity="block")).blocked is None


# --- streamed answers -----------------------------------------------------------------------


def _stream(guard: StreamGuard, chunks: Sequence[str]) -> tuple[str, bool]:
    out = []
    for chunk in chunks:
        step = guard.feed(chunk)
        out.append(step.release)
        if step.stop:
            return "".join(out), True
    last = guard.finish()
    return "".join(out) + last.release, last.stop


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


PADDING = "The weather is mild and the meeting went well. " * 60  # ~2.8 KB, past HOLD


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1000])
def test_pii_split_across_chunks_is_redacted(size: int) -> None:
    text = PADDING + ANSWER + " " + PADDING + ANSWER
    released, stopped = _stream(StreamGuard(Policy()), _chunks(text, size))
    assert not stopped
    assert released == guard_completion(text, Policy()).text
    assert "jane.doe" not in released and "4111" not in released and "[EMAIL_1]" in released


def test_text_is_released_before_the_end_but_never_the_held_tail() -> None:
    guard = StreamGuard(Policy())
    released = ""
    fed = 0
    for chunk in _chunks(PADDING * 3, 10):
        released += guard.feed(chunk).release
        fed += len(chunk)
        assert len(released) <= max(0, fed - HOLD)
    assert len(released) > 0


def test_stream_stops_on_a_toxic_window_before_releasing_it() -> None:
    scorer = CountingScorer()
    guard = StreamGuard(Policy(toxicity="block"), scorer=scorer)
    text = PADDING + "and then BAD things " + PADDING
    released, stopped = _stream(guard, _chunks(text, 5))
    assert stopped and "BAD" not in released
    later = guard.feed("more text")
    assert later.stop and later.release == "" and later.blocked == "OUTPUT_TOXICITY_BLOCKED"
    assert guard.finish().stop


def test_stream_flags_and_goes_on_under_flag() -> None:
    guard = StreamGuard(Policy(toxicity="flag"), scorer=CountingScorer())
    text = PADDING + "BAD " + PADDING
    released, stopped = _stream(guard, _chunks(text, 50))
    assert not stopped and released == text
    assert guard.findings["TOXICITY"] == 1 and guard.finish().flags == ("TOXICITY",)


def test_stream_stops_on_a_blocked_secret() -> None:
    key = "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
    guard = StreamGuard(Policy())
    released, stopped = _stream(guard, _chunks(PADDING + key + PADDING, 4))
    assert stopped and "sk-" not in released
    assert guard.finish().blocked == "OUTPUT_PII_BLOCKED"


def test_stream_work_is_bounded_per_character() -> None:
    scorer = CountingScorer()
    guard = StreamGuard(Policy(toxicity="flag"), scorer=scorer)
    text = PADDING * 70  # ~200 KB in 10-character chunks
    released, _ = _stream(guard, _chunks(text, 10))
    assert released == text
    # A PII scan per STEP released characters, a model call per STRIDE arrived ones, each
    # over a bounded window: the work grows with the text, not with the number of chunks.
    assert guard.scans <= len(text) // STEP + 2
    assert STRIDE <= HOLD  # scoring never holds text back longer than the PII hold does
    assert scorer.calls <= len(text) // STRIDE + 2
    assert scorer.max_rows <= -(-(STRIDE + 10) // (toxicity.WINDOW - toxicity.OVERLAP))


def test_an_item_that_never_closes_is_not_held_and_rescanned_forever() -> None:
    # A PEM key with no END line runs to the end of whatever has arrived: it would hold the
    # whole rest of the answer and be rescanned on every chunk.
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + "ab" * 200
    guard = StreamGuard(Policy(secret="redact"))
    text = PADDING + pem + PADDING * 20
    released, stopped = _stream(guard, _chunks(text, 4))
    assert stopped and guard.finish().blocked == "OUTPUT_PII_BLOCKED"
    assert "BEGIN" not in released
    assert guard.scans <= (len(PADDING) + len(pem) + MAX_HELD + HOLD) // STEP + 2


def test_one_huge_chunk_is_scored_whole_in_bounded_rows() -> None:
    scorer = CountingScorer()
    guard = StreamGuard(Policy(toxicity="block"), scorer=scorer)
    step = guard.feed("lorem ipsum " * 100_000 + "BAD" + "x" * 5000)
    assert step.stop and step.release == ""
    assert scorer.calls == 1 and scorer.max_rows <= toxicity.MAX_WINDOWS


SEGMENTS = [
    "hello",
    "the",
    " ",
    " ",
    "\n",
    ". ",
    ", ",
    "42",
    "x",
    "@",
    "jane.doe@example.com",
    "a@b.io",
    "4111 1111 1111 1111",
    "+1 415 555 0100",
    "DE89 3704 0044 0532 0130 00",
    "192.168.1.20",
    "fe80::1ff:fe23:4567:890a",
    "123-45-6789",
    "password is Tr0ub4dor&3x",
    "jane [at] example [dot] com",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.sampled_from(SEGMENTS), max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
    hold=st.sampled_from([HOLD, 64, 40]),
    email=st.sampled_from(["redact", "hash", "allow"]),
)
def test_any_split_releases_exactly_the_whole_answer_redaction(
    parts: list[str], cuts: list[int], hold: int, email: str
) -> None:
    text = "".join(parts)
    policy = Policy.model_validate({"email": email, "secret": "redact"})
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    guard = StreamGuard(policy, salt="t", hold=hold)
    released, stopped = _stream(guard, chunks)
    whole = guard_completion(text, policy, salt="t")
    assert not stopped and whole.blocked is None
    assert released == whole.text
    assert dict(guard.findings) == whole.findings


def test_output_module_names_its_codes_as_catalogued() -> None:
    assert output_mod.OUTPUT_PII_BLOCKED == CompletionCode.OUTPUT_PII_BLOCKED
    assert output_mod.OUTPUT_TOXICITY_BLOCKED == CompletionCode.OUTPUT_TOXICITY_BLOCKED
