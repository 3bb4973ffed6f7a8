"""The model catalog, the tiers file and tenant files: validation and limits in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.config.tenants import TenantConfig, limits_for, load_tenants_file, load_tiers
from guardstream.errors import GuardstreamError

SETTINGS = Settings()


def test_shipped_catalog_has_integer_prices() -> None:
    catalog = load_catalog(SETTINGS.model_catalog)
    assert catalog.version >= 1
    for spec in catalog.models.values():
        assert isinstance(spec.input_micros_per_mtok, int)
        assert spec.max_output_tokens <= spec.context_window


def test_float_price_is_refused_naming_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text(
        "version: 1\nmodels:\n  m:\n    family: gpt\n    context_window: 10\n"
        "    max_output_tokens: 5\n    input_micros_per_mtok: 0.5\n"
        "    output_micros_per_mtok: 1\n"
    )
    with pytest.raises(GuardstreamError) as info:
        load_catalog(bad)
    assert "models.m.input_micros_per_mtok" in info.value.cause


def test_tier_defaults_fill_what_a_tenant_leaves_out() -> None:
    tiers = load_tiers(SETTINGS.tiers_file)
    own = TenantConfig(tenant_id="acme", tier="free", requests_per_minute=7)
    limits = limits_for("acme", own, tiers)
    assert limits is not None
    assert limits.requests_per_minute == 7
    assert limits.tokens_per_minute == tiers.tiers["free"].tokens_per_minute
    assert limits.daily_budget_micros == tiers.tiers["free"].daily_budget_micros


def test_unknown_tenant_follows_the_setting() -> None:
    tiers = load_tiers(SETTINGS.tiers_file)
    assert tiers.unknown_tenants == "reject"
    assert limits_for("ghost", None, tiers) is None
    lenient = tiers.model_copy(update={"unknown_tenants": "default"})
    limits = limits_for("ghost", None, lenient)
    assert limits is not None and limits.tier == tiers.default_tier and not limits.configured


def test_rate_multiplier_scales_tier_defaults_only() -> None:
    tiers = load_tiers(SETTINGS.tiers_file)
    spec = tiers.tiers["standard"].model_copy(update={"rate_multiplier_bp": 5000})
    scaled = tiers.model_copy(update={"tiers": {**tiers.tiers, "standard": spec}})
    limits = limits_for("t1", TenantConfig(tenant_id="t1", burst_tokens=3), scaled)
    assert limits is not None
    assert limits.requests_per_minute == spec.requests_per_minute // 2
    assert limits.burst_tokens == 3


def test_tenants_file_errors_name_the_entry(tmp_path: Path) -> None:
    tiers = load_tiers(SETTINGS.tiers_file)
    f = tmp_path / "t.yaml"
    f.write_text("tenants:\n  - tenant_id: acme\n  - tenant_id: BAD ID\n")
    with pytest.raises(GuardstreamError) as info:
        load_tenants_file(f, tiers)
    assert "tenants[1].tenant_id" in info.value.cause
    f.write_text("tenants:\n  - tenant_id: acme\n    tier: platinum\n")
    with pytest.raises(GuardstreamError, match="platinum"):
        load_tenants_file(f, tiers)
    f.write_text("tenants:\n  - tenant_id: acme\n    daily_budget_micros: 5\n")
    assert load_tenants_file(f, tiers)[0].daily_budget_micros == 5
