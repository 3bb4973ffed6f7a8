"""`bench ingest --signing`: the timed records really are signed and really verify."""

from __future__ import annotations

import dataclasses

import pytest

from guardstream.config.settings import Settings
from guardstream.ops.bench import (
    SIGNINGS,
    bench_ingest,
    make_records,
    offline_judge,
    signed_records,
)
from tests import SCHEMA_DIR

SETTINGS = Settings(schema_dir=SCHEMA_DIR)


@pytest.mark.parametrize("scheme", SIGNINGS)
def test_signed_bench_records_pass_verification_like_unsigned_ones(scheme: str) -> None:
    baseline = bench_ingest(SETTINGS, 60, signing="none").forwarded
    assert baseline > 0
    assert bench_ingest(SETTINGS, 60, signing=scheme).forwarded == baseline


def test_a_signature_moved_onto_another_bench_record_is_refused() -> None:
    records, authenticator = signed_records(make_records(3, 0.0, schema_dir=SCHEMA_DIR), "ed25519")
    assert authenticator is not None
    headers = dict(records[0].headers)
    assert headers["ce_gssig"].startswith(b"v1a,bench,")
    judge = offline_judge(SETTINGS, authenticator=authenticator).judge
    # Record 1's headers (its id, its tenant, its signature) on record 0's body.
    moved = dataclasses.replace(records[0], headers=records[1].headers)
    assert judge.judge(moved).code == "AUTH_INVALID"
