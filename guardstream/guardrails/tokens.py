"""Prompt token estimates, pluggable per model family.

The estimate is what the metering stage reserves budget against, so it errs high: about four
characters per token for Latin text, one token per CJK character (which chars/4 would badly
under-count), plus per-message overhead for the chat format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Messages = Sequence[tuple[str, str]]
Estimator = Callable[[Messages], int]
_ESTIMATORS: dict[str, Estimator] = {}


def _wide(text: str) -> int:
    return sum(1 for c in text if c >= "\u2e80")


def _chars_over(divisor: int, per_message: int, priming: int) -> Estimator:
    def estimate(messages: Messages) -> int:
        total = priming
        for _role, content in messages:
            wide = 0 if content.isascii() else _wide(content)
            total += per_message + wide + -(-(len(content) - wide) // divisor)
        return total

    return estimate


def register_estimator(family: str, estimator: Estimator) -> None:
    """Use `estimator` for models of `family` (replaces any earlier one)."""
    _ESTIMATORS[family] = estimator


def estimate_prompt_tokens(messages: Messages, model_family: str) -> int:
    """Estimated prompt tokens of (role, content) messages for a model family."""
    return _ESTIMATORS.get(model_family, _ESTIMATORS["default"])(messages)


register_estimator("default", _chars_over(4, 4, 3))
register_estimator("gpt", _chars_over(4, 4, 3))
register_estimator("claude", _chars_over(3, 5, 3))  # denser tokenizer: err high
register_estimator("llama", _chars_over(4, 4, 3))
