"""Fetching the broker and registry from Maven Central with the machine's `mvn`, cached.

Everything lands under ``settings.cache_dir``: Maven's local repository (``m2/``), the
broker's jars (``kafka-<v>/libs``) and the unpacked registry (``apicurio-<v>/``). A ``.ok``
manifest written last records each file's size, so a half-finished fetch is redone, and a
cached one is verified cheaply on every ``stack up``. Maven itself checks the checksums of
what it downloads (``--strict-checksums``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError

_PROGRESS = re.compile(r"Progress \(\d+\): (.*)")
_DOWNLOADED = re.compile(r"Downloaded from \S+: (\S+) \(([^)]*)\)")
_ERROR = re.compile(r"\[ERROR\] (.*)")


_LINE = re.compile(r"(\d+)\.(\d+)")


def kafka_line(version: str) -> tuple[int, int]:
    """The (major, minor) of a Kafka release ("4.1.1" -> (4, 1)), or a one-line error."""
    m = _LINE.match(version)
    if m is None:
        raise GuardstreamError(
            f"GUARDSTREAM_KAFKA_VERSION '{version}' is not a Kafka version",
            "set it to a release such as 3.9.1 or 4.1.1 (or unset it for the default)",
        )
    return int(m.group(1)), int(m.group(2))


def kafka_major(version: str) -> int:
    """The major version of a Kafka release ("4.1.1" -> 4)."""
    return kafka_line(version)[0]


@dataclass(frozen=True)
class BrokerLogging:
    """How one Kafka line logs: the pom profile with its slf4j binding, and the config."""

    profile: str
    binding_glob: str  # the binding's jar in libs/, to tell a cache from before a change
    config_file: str
    jvm_property: str

    def jvm_flags(self, home: Path) -> list[str]:
        """The JVM flags that point the broker (or a tool) at the config in `home`."""
        return [f"-D{self.jvm_property}=file:{home / self.config_file}"]


# Kafka 3.x ships reload4j (log4j 1 syntax); 4.0 moved to log4j2 (KIP-653).
LOG4J = BrokerLogging(
    "kafka-log4j", "slf4j-reload4j-*.jar", "log4j.properties", "log4j.configuration"
)
LOG4J2 = BrokerLogging(
    "kafka-log4j2", "log4j-slf4j-impl-*.jar", "log4j2.properties", "log4j2.configurationFile"
)


def broker_logging(version: str) -> BrokerLogging:
    """The logging backend of a Kafka version."""
    return LOG4J2 if kafka_major(version) >= 4 else LOG4J


def kafka_home(settings: Settings) -> Path:
    """Directory holding the broker's jars for the configured version."""
    return settings.cache_dir / f"kafka-{settings.kafka_version}"


def registry_home(settings: Settings) -> Path:
    """Directory holding the unpacked registry application."""
    return settings.cache_dir / f"apicurio-{settings.apicurio_version}"


def _manifest_ok(home: Path) -> bool:
    marker = home / ".ok"
    if not marker.is_file():
        return False
    try:
        sizes: dict[str, int] = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    for rel, size in sizes.items():
        f = home / rel
        if not f.is_file() or f.stat().st_size != size:
            return False
    return bool(sizes)


def _write_manifest(home: Path, files: Iterator[Path]) -> None:
    sizes = {str(f.relative_to(home)): f.stat().st_size for f in files if f.is_file()}
    (home / ".ok").write_text(json.dumps(sizes, indent=0, sort_keys=True))


def _pom() -> Path:
    return Path(str(resources.files("guardstream.stack").joinpath("pom.xml")))


def _run_mvn(settings: Settings, args: list[str], what: str, console: Console) -> None:
    """Run Maven, turning its transfer output into a progress line and its errors into one."""
    mvn = shutil.which(settings.mvn)
    if mvn is None:
        raise GuardstreamError(
            f"Maven ('{settings.mvn}') is not on PATH, so the {what} cannot be fetched",
            "install it (apt-get install maven) or set GUARDSTREAM_MVN to its path",
        )
    cmd = [
        mvn,
        "-f",
        str(_pom()),
        "--strict-checksums",
        "-Dstyle.color=never",
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
        f"-Dkafka.version={settings.kafka_version}",
        f"-Dapicurio.version={settings.apicurio_version}",
        *args,
    ]
    errors: list[str] = []
    tail: list[str] = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.fields[detail]}", justify="left"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"fetching {what}", total=None, detail="")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        buf = b""
        files = 0
        while chunk := proc.stdout.read1(8192):  # type: ignore[attr-defined]
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                tail = [*tail[-20:], line]
                if m := _PROGRESS.match(line):
                    progress.update(task, detail=f"{files} files · {m.group(1)[:60]}")
                elif m := _DOWNLOADED.match(line):
                    files += 1
                    name = m.group(1).rsplit("/", 1)[-1]
                    progress.update(task, detail=f"{files} files · {name} ({m.group(2)})")
                elif m := _ERROR.match(line):
                    errors.append(m.group(1))
        rc = proc.wait()
    if rc != 0:
        first = next((e for e in errors if e.strip()), tail[-1] if tail else "no output")
        raise GuardstreamError(
            f"fetching the {what} from Maven Central failed: {first[:300]}",
            "check network access to Maven Central and the version settings "
            "(GUARDSTREAM_KAFKA_VERSION / GUARDSTREAM_APICURIO_VERSION), then run again",
        )


def ensure_kafka(settings: Settings, console: Console) -> Path:
    """Return the broker's jar directory, fetching it first unless the cache is complete."""
    home = kafka_home(settings)
    libs = home / "libs"
    logging = broker_logging(settings.kafka_version)
    # A cache fetched before the binding was chosen by version holds the wrong one.
    if _manifest_ok(home) and any(libs.glob(logging.binding_glob)):
        return libs
    shutil.rmtree(home, ignore_errors=True)
    _run_mvn(
        settings,
        [
            f"-Pkafka,{logging.profile}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        f"Apache Kafka {settings.kafka_version}",
        console,
    )
    if not any(libs.glob(f"kafka_2.13-{settings.kafka_version}.jar")):
        raise GuardstreamError(
            f"Maven finished but kafka_2.13-{settings.kafka_version}.jar is missing in {libs}",
            "delete that directory and run `guardstream stack up` again",
        )
    _write_manifest(home, libs.iterdir())
    console.print(f"[green]✓[/] Apache Kafka {settings.kafka_version} cached in {home}")
    return libs


def ensure_registry(settings: Settings, console: Console) -> Path:
    """Return the directory holding the registry's runnable jar, fetching and unpacking it."""
    home = registry_home(settings)
    if _manifest_ok(home):
        return home / "app"
    shutil.rmtree(home, ignore_errors=True)
    download = home / "download"
    _run_mvn(
        settings,
        [
            "-Pregistry",
            "dependency:copy",
            f"-DoutputDirectory={download}",
        ],
        f"Apicurio Registry {settings.apicurio_version}",
        console,
    )
    archives = list(download.glob("apicurio-registry-app-*.tar.gz"))
    if not archives:
        raise GuardstreamError(
            f"Maven finished but no apicurio-registry-app archive is in {download}",
            "delete that directory and run `guardstream stack up` again",
        )
    app = home / "app"
    with console.status(f"unpacking {archives[0].name}"), tarfile.open(archives[0]) as tar:
        tar.extractall(app, filter="data")
    archives[0].unlink()  # the unpacked tree is what runs; the archive stays in m2/
    _write_manifest(home, app.rglob("*"))
    console.print(f"[green]✓[/] Apicurio Registry {settings.apicurio_version} cached in {home}")
    return app


def registry_jar(app: Path) -> Path:
    """The runnable jar of an unpacked registry: fast-jar (3.1+) or legacy runner (3.0)."""
    for candidate in [app / "quarkus-run.jar", *sorted(app.glob("*-runner.jar"))]:
        if candidate.is_file():
            return candidate
    raise GuardstreamError(
        f"no quarkus-run.jar or *-runner.jar in {app}",
        f"delete {app.parent} and run `guardstream stack up` again",
    )
