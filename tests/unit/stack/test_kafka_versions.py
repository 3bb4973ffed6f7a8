"""What the stack does differently per Kafka line (pure parts; the brokers run in integration)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.stack import fetch, services


@pytest.mark.parametrize(
    ("version", "major"), [("3.9.1", 3), ("4.0.0", 4), ("4.1.1", 4), ("10.0.0-rc1", 10)]
)
def test_major_version(version: str, major: int) -> None:
    assert fetch.kafka_major(version) == major


def test_a_version_that_is_not_one_names_the_setting() -> None:
    with pytest.raises(GuardstreamError) as info:
        fetch.kafka_major("latest")
    assert "GUARDSTREAM_KAFKA_VERSION" in info.value.cause
    assert "\n" not in str(info.value)


def test_kafka_3_logs_through_reload4j_and_4_through_log4j2(tmp_path: Path) -> None:
    three, four = fetch.broker_logging("3.9.1"), fetch.broker_logging("4.1.1")
    assert (three.profile, four.profile) == ("kafka-log4j", "kafka-log4j2")
    assert three.jvm_flags(tmp_path) == [
        f"-Dlog4j.configuration=file:{tmp_path / 'log4j.properties'}"
    ]
    assert four.jvm_flags(tmp_path) == [
        f"-Dlog4j2.configurationFile=file:{tmp_path / 'log4j2.properties'}"
    ]


def test_the_pom_has_each_logging_profile() -> None:
    pom = fetch._pom().read_text()
    for logging in (fetch.LOG4J, fetch.LOG4J2):
        assert f"<id>{logging.profile}</id>" in pom


@pytest.mark.parametrize("logging", [fetch.LOG4J, fetch.LOG4J2])
def test_both_configs_quiet_the_same_loggers_and_log_to_stdout(
    logging: fetch.BrokerLogging,
) -> None:
    text = services.logging_config(logging)
    lines = dict(line.split("=", 1) for line in text.splitlines())
    if logging is fetch.LOG4J:
        quiet = {k.removeprefix("log4j.logger.") for k, v in lines.items() if v == "WARN"}
        assert lines["log4j.rootLogger"] == "INFO, stdout"
    else:
        quiet = {
            lines[k.replace(".level", ".name")]
            for k, v in lines.items()
            if k.startswith("logger.") and v == "WARN"
        }
        assert lines["appender.stdout.type"] == "Console"
        assert lines["rootLogger.level"] == "INFO"
    assert quiet == set(services._QUIET_LOGGERS)


def test_a_cache_with_the_other_binding_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kafka 4 cache from before the binding was chosen by version holds reload4j's.
    settings = Settings(cache_dir=tmp_path, data_dir=tmp_path / "data", kafka_version="4.1.1")
    libs = fetch.kafka_home(settings) / "libs"
    libs.mkdir(parents=True)
    for jar in ("kafka_2.13-4.1.1.jar", "slf4j-reload4j-1.7.36.jar"):
        (libs / jar).write_bytes(b"jar")
    fetch._write_manifest(libs.parent, libs.iterdir())
    runs: list[list[str]] = []

    def fake_mvn(_s: Settings, args: list[str], _what: str, _c: Console) -> None:
        runs.append(args)
        libs.mkdir(parents=True)
        for jar in ("kafka_2.13-4.1.1.jar", "log4j-slf4j-impl-2.24.3.jar"):
            (libs / jar).write_bytes(b"jar")

    monkeypatch.setattr(fetch, "_run_mvn", fake_mvn)
    assert fetch.ensure_kafka(settings, Console(quiet=True)) == libs
    assert runs and runs[0][0] == "-Pkafka,kafka-log4j2"
    assert not list(libs.glob("slf4j-reload4j-*"))
    fetch.ensure_kafka(settings, Console(quiet=True))  # now cached
    assert len(runs) == 1


@pytest.mark.parametrize(
    ("formatted_by", "running", "refused"),
    [
        ("4.1.1", "3.9.1", True),  # 3.9 dies on 4.1's metadata.version (feature level 27)
        ("4.1.1", "4.0.0", True),
        ("3.9.1", "4.1.1", False),  # an upgrade keeps the old metadata.version
        ("4.1.2", "4.1.1", False),  # patch releases share the metadata.version
        (None, "3.9.1", False),  # formatted before the version was recorded
    ],
)
def test_an_older_broker_on_a_newer_data_dir_names_the_fix(
    tmp_path: Path, formatted_by: str | None, running: str, refused: bool
) -> None:
    settings = Settings(cache_dir=tmp_path, data_dir=tmp_path / "data", kafka_version=running)
    (settings.data_dir / "kafka").mkdir(parents=True)
    if formatted_by:
        (settings.data_dir / "kafka" / services.FORMATTED_BY).write_text(formatted_by + "\n")
    if not refused:
        services.check_formatted_version(settings)
        return
    with pytest.raises(GuardstreamError) as info:
        services.check_formatted_version(settings)
    assert f"formatted by Kafka {formatted_by}" in info.value.cause
    assert f"GUARDSTREAM_KAFKA_VERSION={formatted_by}" in info.value.fix
    assert "GUARDSTREAM_DATA_DIR" in info.value.fix
    assert "\n" not in str(info.value)
