"""Paths the tests read from the source checkout (the package itself never knows them)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repo's schema files: what `Settings().schema_dir` is in a source checkout.
SCHEMA_DIR = REPO_ROOT / "schemas"
