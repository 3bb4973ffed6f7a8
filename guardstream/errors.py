"""User-facing errors: one line naming the cause and the fix, never a traceback."""

from __future__ import annotations


class GuardstreamError(Exception):
    """An error a user can cause and fix; the CLI prints it as one line and exits non-zero."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"{cause} — {fix}")
        self.cause = cause
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.cause} — fix: {self.fix}"
