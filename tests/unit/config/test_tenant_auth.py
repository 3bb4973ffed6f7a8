"""Tenant auth settings: keys as operators write them, on the topic, and the apply-time rule."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from guardstream.config import resources
from guardstream.config.tenants import TenantConfig, TenantKey, load_tenants_file, load_tiers
from guardstream.errors import GuardstreamError
from guardstream.serde.schemas import load_all, reader_schema
from tests import SCHEMA_DIR

PUBLIC = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TIERS = load_tiers(resources.data_file("config", "tiers.yaml"))


def test_key_material_matches_its_scheme() -> None:
    TenantKey(key_id="e1", scheme="ed25519", public_key=PUBLIC)
    TenantKey(key_id="k1", scheme="hmac-sha256")
    with pytest.raises(ValidationError, match="32 raw bytes"):
        TenantKey(key_id="e1", scheme="ed25519", public_key=base64.b64encode(b"short").decode())
    with pytest.raises(ValidationError, match="32 raw bytes"):
        TenantKey(key_id="e1", scheme="ed25519")
    with pytest.raises(ValidationError, match="secret stays with the workers"):
        TenantKey(key_id="k1", scheme="hmac-sha256", public_key=PUBLIC)
    with pytest.raises(ValidationError, match="not_after must be later"):
        TenantKey(key_id="k1", scheme="hmac-sha256", not_before=NOW, not_after=NOW)
    with pytest.raises(ValidationError):
        TenantKey(key_id="has space", scheme="hmac-sha256")


def test_keys_survive_the_topic_round_trip() -> None:
    config = TenantConfig(
        tenant_id="acme",
        auth="required",
        keys=[
            TenantKey(key_id="e1", scheme="ed25519", public_key=PUBLIC, not_after=NOW),
            TenantKey(key_id="k1", scheme="hmac-sha256", not_before=NOW - timedelta(days=1)),
        ],
    )
    schema = reader_schema("tenant_config", SCHEMA_DIR)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, config.to_avro(1))
    buf.seek(0)
    assert TenantConfig.from_avro(fastavro.schemaless_reader(buf, schema, schema)) == config


def test_records_written_before_auth_existed_read_as_not_set() -> None:
    current = load_all(SCHEMA_DIR)["tenant_config"]
    old = json.loads(json.dumps(current))
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("auth", "keys")]
    writer = fastavro.parse_schema(old)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, {"tenant_id": "acme", "updated_at": 1})
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, writer, reader_schema("tenant_config", SCHEMA_DIR))
    config = TenantConfig.from_avro(read)
    assert config.auth is None and config.keys == []
    assert config.auth_mode(TIERS) == "off"


def _tenants(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(body)
    return path


def test_a_tenant_that_requires_signatures_needs_a_key_valid_now(tmp_path: Path) -> None:
    required = "tenants:\n  - tenant_id: acme\n    auth: required\n"
    with pytest.raises(GuardstreamError, match=r"acme\) requires signed events"):
        load_tenants_file(_tenants(tmp_path, required), TIERS, now=NOW)
    retired = required + (
        "    keys:\n      - {key_id: k1, scheme: hmac-sha256, not_after: 2026-11-30T00:00:00Z}\n"
    )
    with pytest.raises(GuardstreamError, match="no key valid now"):
        load_tenants_file(_tenants(tmp_path, retired), TIERS, now=NOW)
    current = required + (
        "    keys:\n      - {key_id: k1, scheme: hmac-sha256, not_before: 2026-11-30T00:00:00Z}\n"
    )
    (config,) = load_tenants_file(_tenants(tmp_path, current), TIERS, now=NOW)
    assert config.keys[0].key_id == "k1"


def test_an_unquoted_off_is_off_not_a_yaml_boolean(tmp_path: Path) -> None:
    assert TIERS.auth == "off"  # the packaged tiers file says `auth: off`, unquoted
    (config,) = load_tenants_file(
        _tenants(tmp_path, "tenants:\n  - tenant_id: acme\n    auth: off\n"), TIERS
    )
    assert config.auth == "off"


def test_the_tiers_default_applies_to_tenants_without_their_own(tmp_path: Path) -> None:
    strict = TIERS.model_copy(update={"auth": "required"})
    plain = _tenants(tmp_path, "tenants:\n  - tenant_id: acme\n")
    with pytest.raises(GuardstreamError, match="requires signed events"):
        load_tenants_file(plain, strict, now=NOW)
    opted_out = _tenants(tmp_path, "tenants:\n  - tenant_id: acme\n    auth: optional\n")
    (config,) = load_tenants_file(opted_out, strict, now=NOW)
    assert config.auth_mode(strict) == "optional"
