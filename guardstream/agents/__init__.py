"""The stream stages, one module per stage; each is thin: decode, decide, route, record."""

from __future__ import annotations

import asyncio
from typing import Any


async def hold_if_stopping(app: Any) -> None:
    """Once the worker is stopping, process nothing more: wait here until cancelled.

    Faust flushes its producer early in shutdown and stops it after the agents, so whatever
    an agent sent in between would be dropped with the producer ("ProducerBuffer crashed").
    A record held here is not acknowledged before the final offset commit, so whichever
    worker owns the partition next processes it.
    """
    if app.should_stop:
        await asyncio.Event().wait()
