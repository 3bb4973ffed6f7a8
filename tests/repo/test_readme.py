"""The README documents every reason code and every setting the code has."""

from __future__ import annotations

import re

from guardstream.config.settings import Settings
from guardstream.reasons import DESCRIPTIONS, Reason
from tests import REPO_ROOT

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


def test_the_layout_section_shows_every_package_and_root_module() -> None:
    section = README.split("## Code layout", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    package = REPO_ROOT / "guardstream"
    rooms = [p.name + "/" for p in package.iterdir() if (p / "__init__.py").exists()]
    modules = [p.name for p in package.glob("*.py") if not p.name.startswith("_")]
    assert len(rooms) >= 10 and "app.py" in modules  # the walk itself still finds them
    listed = {
        line.split()[0] for line in tree.splitlines() if line.startswith("  ") and line.split()
    }
    for name in rooms + modules:
        assert name in listed, f"{name} is missing from the README's layout tree"


def test_every_completion_code_is_documented() -> None:
    from guardstream.dispatch.codes import DESCRIPTIONS as COMPLETION_CODES
    from guardstream.dispatch.codes import CompletionCode

    assert set(COMPLETION_CODES) == set(CompletionCode)
    for code in CompletionCode:
        assert f"| `{code}` |" in README, code
