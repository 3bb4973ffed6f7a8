"""A worker logs at the level it is given: no hidden DEBUG root logger."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import faust
import pytest

from guardstream.app import build_worker
from guardstream.config.settings import Settings


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stdout, stderr = sys.stdout, sys.stderr
    yield
    sys.stdout, sys.stderr = stdout, stderr  # the worker redirects them into logging
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(("loglevel", "expected"), [("warning", "WARNING"), ("info", "INFO")])
def test_the_root_logger_is_set_to_the_requested_level(
    restored_logging: None, log_format: str, loglevel: str, expected: str
) -> None:
    app = faust.App("gs-unit-logging", broker="kafka://127.0.0.1:1")
    worker = build_worker(app, Settings(log_format=log_format), loglevel)
    worker._setup_logging()
    assert logging.getLevelName(logging.getLogger().level) == expected
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
