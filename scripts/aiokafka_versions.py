"""Which version of each request aiokafka would send to the configured broker.

aiokafka asks every broker for its version ranges (ApiVersions) and sends the newest version
it implements inside the range; a request with no overlap fails at the client. Kafka 4.0
removed old versions (KIP-896), so this shows, per broker, whether the workers can talk to
it at all. Run: `GUARDSTREAM_KAFKA_PORT=... .venv/bin/python scripts/aiokafka_versions.py`
(a PLAINTEXT listener; the host and port come from the usual settings).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
from typing import Any

import aiokafka
import aiokafka.protocol
from aiokafka.conn import create_conn
from aiokafka.protocol.api import Request

from guardstream.config.settings import Settings


def _requests() -> dict[int, Any]:
    found: dict[int, Any] = {}
    for info in pkgutil.iter_modules(aiokafka.protocol.__path__):
        module = importlib.import_module(f"aiokafka.protocol.{info.name}")
        for _, member in inspect.getmembers(module, inspect.isclass):
            cls: Any = member
            if issubclass(cls, Request) and cls is not Request and getattr(cls, "_CLASSES", None):
                found[cls.API_KEY] = cls
    return found


async def main() -> int:
    settings = Settings()
    host, port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    conn = await create_conn(host, int(port))
    broker: dict[int, tuple[int, int]] = dict(conn._versions)
    conn.close()
    print(f"aiokafka {aiokafka.__version__} against {host}:{port}")
    missing = 0
    for key, cls in sorted(_requests().items()):
        implemented = [c.API_VERSION for c in cls._CLASSES]
        if key not in broker:
            print(f"{key:3} {cls.__name__:36} broker: not served")
            continue
        low, high = broker[key]
        usable = [v for v in implemented if low <= v <= high]
        sends = f"v{max(usable)}" if usable else "NONE"
        missing += not usable
        print(
            f"{key:3} {cls.__name__:36} broker v{low}-{high}  "
            f"aiokafka v{min(implemented)}-{max(implemented)}  sends {sends}"
        )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
