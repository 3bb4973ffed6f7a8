"""The tenant directory keeps a tenant whose config cannot be decoded *yet*."""

from __future__ import annotations

from typing import Any

from guardstream.config.settings import Settings
from guardstream.serde.registry import RegistryUnavailable
from guardstream.tables.directory import TenantDirectory


def test_a_registry_outage_delays_a_tenant_config_instead_of_dropping_it() -> None:
    calls: list[bytes] = []

    def decode(value: bytes) -> Any:
        calls.append(value)
        if len(calls) < 3:  # the registry is down for the first two tries
            raise RegistryUnavailable("registry at http://x unreachable")
        return {"config": value}

    directory = TenantDirectory(Settings(), decode)
    directory._apply(b"acme", b"v1")
    assert directory.get("acme") == {"config": b"v1"}
    assert len(calls) == 3


def test_a_config_that_cannot_decode_keeps_the_previous_one() -> None:
    def decode(value: bytes) -> Any:
        if value == b"bad":
            raise ValueError("not Avro")
        return {"config": value}

    directory = TenantDirectory(Settings(), decode)
    directory._apply(b"acme", b"v1")
    directory._apply(b"acme", b"bad")
    assert directory.get("acme") == {"config": b"v1"}
