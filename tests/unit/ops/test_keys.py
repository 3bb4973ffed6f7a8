"""Key rotation on the tenants file: made, listed, retired; the file keeps its comments."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guardstream.auth.signature import Scheme, Signed, sign_ed25519, sign_hmac
from guardstream.auth.verify import Key, verify
from guardstream.config import resources
from guardstream.config.secrets import load_secrets
from guardstream.config.tenants import load_tenants_file, load_tiers
from guardstream.errors import GuardstreamError
from guardstream.ops.keys import list_keys, new_key, retire_key

TIERS = load_tiers(resources.data_file("config", "tiers.yaml"))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FILE = """\
# operators' notes survive edits
tenants:
  - tenant_id: acme
    tier: premium   # billing team
    auth: optional
  - tenant_id: globex
"""
SIGNED = Signed("acme", "r1", "/s", "io.guardstream.request.v1", "2026-12-01T12:00:00Z")
NOW_MS = round(NOW.timestamp() * 1000)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(FILE)
    return tenants, tmp_path / "secrets" / "auth-secrets.yaml"


def test_a_new_ed25519_key_signs_what_its_config_verifies(files: tuple[Path, Path]) -> None:
    tenants, secrets = files
    made = new_key(tenants, TIERS, "acme", "ed25519", secrets, "e1", now=NOW)
    text = tenants.read_text()
    assert "# operators' notes survive edits" in text and "# billing team" in text
    (acme, _) = load_tenants_file(tenants, TIERS, NOW)
    key = acme.keys[0]
    assert (key.key_id, key.scheme, key.not_before) == ("e1", "ed25519", NOW)
    private = base64.b64decode(made.client_secret)
    assert isinstance(Ed25519PrivateKey.from_private_bytes(private), Ed25519PrivateKey)
    header = sign_ed25519(private, "e1", SIGNED, b"v").encode()
    public = base64.b64decode(key.public_key or "")
    assert verify(header, SIGNED, b"v", [Key("e1", Scheme.ED25519, public)], NOW_MS).ok
    assert not secrets.exists()  # nothing secret is kept for an Ed25519 key


def test_a_new_hmac_key_keeps_its_secret_beside_the_workers_only(files: tuple[Path, Path]) -> None:
    tenants, secrets = files
    made = new_key(tenants, TIERS, "acme", "hmac-sha256", secrets, "k1", now=NOW)
    assert made.client_secret not in tenants.read_text()
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    stored = load_secrets(secrets)["acme"]["k1"]
    header = sign_hmac(stored, "k1", SIGNED, b"v").encode()
    assert verify(header, SIGNED, b"v", [Key("k1", Scheme.HMAC_SHA256, stored)], NOW_MS).ok
    (state,) = list_keys(tenants, TIERS, "acme", secrets, NOW)
    assert (state.state, state.secret_here) == ("valid", True)


def test_rotation_new_then_retire_and_the_last_valid_key_is_kept(files: tuple[Path, Path]) -> None:
    tenants, secrets = files
    tenants.write_text(FILE.replace("auth: optional", "auth: required\n    keys: []"))
    with pytest.raises(GuardstreamError, match="requires signed events"):
        load_tenants_file(tenants, TIERS, NOW)  # the file as it is would not apply
    new_key(tenants, TIERS, "acme", "ed25519", secrets, "old", now=NOW - timedelta(days=30))
    new_key(tenants, TIERS, "acme", "ed25519", secrets, "new", now=NOW)
    retire_key(tenants, TIERS, "acme", "old", now=NOW)
    later = NOW + timedelta(minutes=1)
    states = {s.key.key_id: s.state for s in list_keys(tenants, TIERS, "acme", secrets, later)}
    assert states == {"old": "retired", "new": "valid"}
    before = tenants.read_text()
    with pytest.raises(GuardstreamError, match="no key valid now"):
        retire_key(tenants, TIERS, "acme", "new", now=later)
    assert tenants.read_text() == before  # a refused change leaves the file as it was


def test_mistakes_are_one_line_errors(files: tuple[Path, Path]) -> None:
    tenants, secrets = files
    with pytest.raises(GuardstreamError, match="no tenant nobody"):
        new_key(tenants, TIERS, "nobody", "ed25519", secrets, now=NOW)
    new_key(tenants, TIERS, "acme", "ed25519", secrets, "e1", now=NOW)
    with pytest.raises(GuardstreamError, match="already has a key e1"):
        new_key(tenants, TIERS, "acme", "ed25519", secrets, "e1", now=NOW)
    with pytest.raises(GuardstreamError, match="has no key nope"):
        retire_key(tenants, TIERS, "acme", "nope", now=NOW)


def test_a_hand_edited_secret_that_is_not_whsec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth-secrets.yaml"
    path.write_text("acme:\n  k1: plain-text\n")
    with pytest.raises(GuardstreamError, match="not `whsec_<base64>`"):
        load_secrets(path)
