"""Toxicity scoring with `alt-profanity-check`: a score from 0 (clean) to 1 (toxic).

The library ships its model (a TF-IDF vectoriser and a calibrated linear SVM, about 1 MB of
joblib files) inside the wheel, so nothing is downloaded at run time. Importing it costs
about 1.6 s (scikit-learn) and ~100 MB, so it is loaded lazily, once per process, and only
when some tenant's policy asks for toxicity: a worker whose tenants all leave it at `allow`
never imports scikit-learn. `preload()` lets a worker pay that cost at start instead.

Windows. The model was trained on short comments: TF-IDF over a linear model dilutes one
insult in a long text (measured: "you are a fucking idiot" scores 1.0 alone, 0.95 in 64
characters of clean text, 0.53 in 128, 0.03 in 256). So a text is cut into windows of
`WINDOW` characters overlapping by `OVERLAP` (a phrase of up to OVERLAP characters is whole
in some window) and its score is the highest window's. Short windows cost precision too:
"this damn bug" scores 0.66, hence the default threshold of 0.8.

Bounded work. One model call (`predict_proba`) costs ~5 ms whatever its batch (the five
calibrated classifiers dominate) plus ~17 µs per 96-character row, so a text is scored in one
call of at most `MAX_WINDOWS` rows: past `MAX_WINDOWS * (WINDOW - OVERLAP)` characters (64 K)
the windows grow instead of multiplying. Every character is still scored, the model call
stays under ~25 ms, and the vectoriser's work stays linear in the text (each character is in
at most two windows); the price is that a very long text is scored coarser (larger windows
dilute more).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WINDOW = 96
OVERLAP = 32
MAX_WINDOWS = 1024

# Scores a batch of texts, one probability per text. Swappable for tests that count work.
Scorer = Callable[[Sequence[str]], Sequence[float]]

_lock = threading.Lock()
_scorer: Scorer | None = None


def _load() -> Scorer:
    # Imported here, not at module level: scikit-learn costs ~1.6 s and ~100 MB, paid only by
    # a process that scores toxicity at all.
    from profanity_check import predict_prob  # type: ignore[import-untyped]

    def score(texts: Sequence[str]) -> Sequence[float]:
        return [float(p) for p in predict_prob(list(texts))]

    return score


def preload() -> float:
    """Load the model now if it is not loaded; the seconds that took (0.0 when loaded)."""
    global _scorer
    if _scorer is not None:
        return 0.0
    with _lock:
        if _scorer is not None:
            return 0.0
        started = time.monotonic()
        _scorer = _load()
        return time.monotonic() - started


def loaded() -> bool:
    """Whether the model is in this process already."""
    return _scorer is not None


def windows(text: str) -> list[str]:
    """The text cut into at most MAX_WINDOWS overlapping windows covering all of it."""
    if len(text) <= WINDOW:
        return [text] if text.strip() else []
    step = max(WINDOW - OVERLAP, -(-(len(text) - OVERLAP) // MAX_WINDOWS))
    size = step + OVERLAP
    out = [text[i : i + size] for i in range(0, max(1, len(text) - OVERLAP), step)]
    return [w for w in out if w.strip()]


@dataclass(frozen=True)
class ToxicityResult:
    """The highest window score (0..1) and how many windows were scored (the work done)."""

    score: float
    windows: int


def score_toxicity(text: str, *, scorer: Scorer | None = None) -> ToxicityResult:
    """The toxicity of `text`: the highest score of its windows, in one model call.

    `scorer` replaces the model (tests); without it the model is loaded on first use.
    """
    parts = windows(text)
    if not parts:
        return ToxicityResult(0.0, 0)
    if scorer is None:
        preload()
        assert _scorer is not None
        scorer = _scorer
    scores = scorer(parts)
    return ToxicityResult(max(scores), len(parts))
