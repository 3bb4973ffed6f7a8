"""The README documents every reason code and every setting the code has."""

from __future__ import annotations

import re

from guardstream.config.settings import REPO_ROOT, Settings
from guardstream.reasons import DESCRIPTIONS, Reason

README = (REPO_ROOT / "README.md").read_text()


def test_every_reason_code_is_documented_with_its_route() -> None:
    for code in Reason:
        route, _ = DESCRIPTIONS[code]
        assert f"| `{code}` | {route} |" in README, code


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`GUARDSTREAM_{name.upper()}`" in README, name


def test_every_audit_kind_the_meter_emits_is_documented() -> None:
    source = (REPO_ROOT / "guardstream" / "metering" / "step.py").read_text()
    kinds = set(re.findall(r'audits\.add\(\s*"([A-Z_]+)"', source))
    assert {"RESERVE", "CHARGE", "OVERRUN", "EXPIRE"} <= kinds  # the pattern still finds them
    audit_schema = (REPO_ROOT / "schemas" / "audit.avsc").read_text()
    for kind in kinds:
        assert f"| `{kind}` |" in README, kind
        assert kind in audit_schema, kind
