"""What `stack up` says when it cannot start: one line naming the cause and the fix."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.stack import fetch, services


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]


def test_missing_java_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(GuardstreamError) as info:
        services.up(_settings(tmp_path, java="/nonexistent/java"), Console(quiet=True))
    assert "Java" in info.value.cause and "GUARDSTREAM_JAVA" in info.value.fix


def test_missing_mvn_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(GuardstreamError) as info:
        fetch.ensure_kafka(_settings(tmp_path, mvn="no-such-mvn"), Console(quiet=True))
    assert "Maven" in info.value.cause and "GUARDSTREAM_MVN" in info.value.fix


def test_taken_port_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(GuardstreamError) as info:
            services.up(_settings(tmp_path, kafka_port=port), Console(quiet=True))
    assert f"127.0.0.1:{port}" in info.value.cause
    assert "GUARDSTREAM_KAFKA_PORT" in info.value.fix
    assert "\n" not in str(info.value)


def test_failed_download_is_one_line(tmp_path: Path) -> None:
    # A version Maven Central does not have: Maven fails, we say which and what to do.
    settings = _settings(tmp_path, kafka_version="0.0.0-nonexistent")
    with pytest.raises(GuardstreamError) as info:
        fetch.ensure_kafka(settings, Console(quiet=True))
    assert "Apache Kafka 0.0.0-nonexistent" in info.value.cause
    assert "GUARDSTREAM_KAFKA_VERSION" in info.value.fix
    assert not (tmp_path / "cache" / "kafka-0.0.0-nonexistent" / ".ok").exists()


def test_incomplete_cache_is_not_trusted(tmp_path: Path) -> None:
    home = tmp_path / "k"
    (home / "libs").mkdir(parents=True)
    jar = home / "libs" / "a.jar"
    jar.write_bytes(b"12345")
    fetch._write_manifest(home, iter([jar]))
    assert fetch._manifest_ok(home)
    jar.write_bytes(b"123")  # truncated after the manifest was written
    assert not fetch._manifest_ok(home)


def test_end_offsets_wait_out_a_broker_still_taking_leadership() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from guardstream.streams.admin import high_watermark

    class Restarting:
        """Answers like a broker that has just restarted: twice NOT_LEADER, then the offset."""

        calls = 0

        def get_watermark_offsets(self, tp: object, timeout: float) -> tuple[int, int]:
            self.calls += 1
            if self.calls <= 2:
                raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
            return 0, 42

    consumer = Restarting()
    assert high_watermark(consumer, "t", 0, timeout_s=10) == 42  # type: ignore[arg-type]
    assert consumer.calls == 3
