"""`/debug/consumer`'s standby section, read from Faust's recovery service."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from faust.types import TP

from guardstream.runtime.diagnostics import standby_offsets


def test_standby_offsets_list_each_standby_partition_with_what_recovery_took_in() -> None:
    recovery = SimpleNamespace(
        standby_tps={TP("app-meter-changelog", 3), TP("app-meter-changelog", 1)},
        standby_offsets={TP("app-meter-changelog", 1): 41},
    )
    app = cast(Any, SimpleNamespace(tables=SimpleNamespace(recovery=recovery)))
    assert standby_offsets(app) == {"app-meter-changelog[1]": 41, "app-meter-changelog[3]": None}


def test_an_app_without_tables_has_no_standbys() -> None:
    assert standby_offsets(cast(Any, SimpleNamespace())) == {}
