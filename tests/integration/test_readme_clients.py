"""The README's client examples, run as written against the real stack and a real worker.

Each Python block of "Produce a request, read its decision" is executed as it stands in the
README; the only changes are the configuration constants a reader would change too (the
topic prefix and the broker/registry addresses), so this session's topics are used. A README
edit that breaks a stock client breaks this test.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from guardstream.config.secrets import encode_secret
from guardstream.config.settings import Settings
from tests import REPO_ROOT

from .conftest import HMAC_SECRETS, Worker

README = (REPO_ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def _block(marker: str) -> str:
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"expected one README python block with {marker!r}, got {len(found)}"
    return found[0]


def _for_session(code: str, settings: Settings) -> str:
    """The block pointed at this session's stack and topics (the registry only if used)."""
    swaps = {
        '"127.0.0.1:9092"': f'"{settings.kafka_bootstrap}"',
        '"guardstream.': f'"{settings.topic_prefix}.',
        '"http://127.0.0.1:8081/apis/ccompat/v7"': f'"{settings.registry_api}"',
    }
    for old, new in swaps.items():
        assert old in code or "SchemaRegistryClient" not in code, f"README lost {old}"
        code = code.replace(old, new)
    assert settings.topic_prefix in code and settings.kafka_bootstrap in code
    return code


def _run(code: str, namespace: dict[str, Any], seconds: float) -> None:
    """exec() with a deadline: a README loop that never ends fails the test, not the run."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            exec(compile(code, "README.md", "exec"), namespace)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"README block still running after {seconds} s"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("mode", ["to_binary(", "to_structured("])
def test_readme_producer_and_consumer_run_verbatim(
    stack: Settings, worker: Worker, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the block opens schemas/request.avsc relative to the repo
    # The key a reader got from `guardstream keys new` (acme's key in tests/integration).
    monkeypatch.setenv("GUARDSTREAM_KEY_ID", "acme-it")
    monkeypatch.setenv("GUARDSTREAM_KEY_SECRET", encode_secret(HMAC_SECRETS["acme", "acme-it"]))
    namespace: dict[str, Any] = {"__name__": "readme"}
    _run(_for_session(_block(mode), stack), namespace, 60)
    _run(_for_session(_block("AvroDeserializer("), stack), namespace, 90)

    decision = namespace["decisions"][namespace["request_id"]]
    assert decision["outcome"] == "ADMITTED", decision["reasons"]
    assert decision["tenant_id"] == "acme"
    assert decision["request_id"] == namespace["request_id"]
    sanitized = decision["sanitized_request"]
    assert sanitized["messages"] == namespace["request_dict"]["messages"]
    assert sanitized["max_tokens"] == 256
    # The binary recipe signs and the worker verified it; the structured one goes unsigned
    # (acme's `auth: optional`).
    signer = namespace["signers"][namespace["request_id"]]
    assert signer == ("acme/acme-it" if mode == "to_binary(" else None)


def test_registered_request_schema_is_the_file_as_shipped(stack: Settings) -> None:
    """What `schemas register` stored is what AvroSerializer sends for the file's text."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": stack.registry_api})
    text = (REPO_ROOT / "schemas" / "request.avsc").read_text()
    found = client.lookup_schema(
        f"{stack.topic_prefix}.requests-value", Schema(text.strip(), "AVRO")
    )
    assert found.schema_id is not None
