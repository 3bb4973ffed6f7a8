"""`guardstream worker`: check what the worker needs, then run the Faust worker."""

from __future__ import annotations

from guardstream.config.settings import Settings
from guardstream.runtime.logs import json_logging_config
from guardstream.streams.admin import ensure_topics


def run(settings: Settings, loglevel: str = "info") -> None:
    """Create missing topics, resolve output schema ids, and run until stopped."""
    import faust

    from guardstream.app import create_app

    ensure_topics(settings)
    app, ctx = create_app(settings)
    ctx.codec.resolve_output_ids()
    if settings.log_format == "json":
        # One JSON object per line, with request and trace ids when a record is in hand.
        worker = faust.Worker(app, loglevel=loglevel, logging_config=json_logging_config(loglevel))
    else:
        worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
