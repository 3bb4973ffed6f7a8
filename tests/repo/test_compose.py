"""docker-compose.yml, the Dockerfile and the Grafana provisioning agree with the code.

No Docker engine runs here, so these check what can silently drift: paths that do not
exist, environment variables no setting reads, ports Prometheus does not scrape, CLI
commands that do not exist, a health check on a page nobody serves, dashboards Grafana
would reject.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer.main
import yaml

from guardstream.config.settings import Settings
from guardstream.lag import exporter as lag_cli
from guardstream.runtime import health
from tests import REPO_ROOT

REPO = REPO_ROOT
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
PROMETHEUS: dict[str, Any] = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))


def _guardstream_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in SERVICES.items() if s.get("image") == "guardstream:local"}


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _dockerfile_env() -> dict[str, str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    out: dict[str, str] = {}
    for line in joined.splitlines():
        if line.startswith("ENV "):
            out.update(re.findall(r"(\w+)=(\S+)", line))
    return out


def _option(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_the_stack_has_every_part() -> None:
    assert {
        "kafka",
        "registry",
        "init",
        "worker-1",
        "worker-2",
        "lag-exporter",
        "prometheus",
        "grafana",
    } <= set(SERVICES)
    assert SERVICES["kafka"]["image"] == "apache/kafka:3.9.1"
    assert SERVICES["registry"]["image"] == "apicurio/apicurio-registry:3.0.9"
    for name in ("kafka", "registry", "prometheus", "grafana", "lag-exporter"):
        assert "test" in SERVICES[name]["healthcheck"], f"{name} has no health check"
    named = {v.split(":", 1)[0] for s in SERVICES.values() for v in s.get("volumes", [])}
    assert set(COMPOSE["volumes"]) <= named, "a declared volume is mounted nowhere"
    assert {"kafka-data", "worker-1-state", "worker-2-state"} <= set(COMPOSE["volumes"])


def test_every_mounted_or_built_path_exists_in_the_repo() -> None:
    for name, service in SERVICES.items():
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            assert (REPO / context / "Dockerfile").is_file(), f"{name}: no Dockerfile"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"


def test_dockerfile_copies_exist_and_are_not_docker_ignored() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = re.findall(r"^COPY\s+(.+?)\s+\S+$", DOCKERFILE, re.M)
    sources = [src for line in copies for src in line.split()]
    assert {"pyproject.toml", "README.md", "guardstream", "schemas", "config"} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
        hits = [p for p in ignored if fnmatch.fnmatch(src, p) or src.startswith(p + "/")]
        assert not hits, f".dockerignore {hits} drops {src}, which the Dockerfile copies"


def test_every_guardstream_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    envs = [("Dockerfile", _dockerfile_env())]
    envs += [(name, _env(s)) for name, s in SERVICES.items()]
    seen = 0
    for where, env in envs:
        for key in env:
            if key.startswith("GUARDSTREAM_"):
                seen += 1
                field = key.removeprefix("GUARDSTREAM_").lower()
                assert field in fields, f"{where} sets {key}, which no setting reads"
    assert seen > 10
    # And the values are ones Settings accepts.
    for _, env in envs:
        values = {
            k.removeprefix("GUARDSTREAM_").lower(): v
            for k, v in env.items()
            if k.startswith("GUARDSTREAM_")
        }
        Settings(**values)  # type: ignore[arg-type]


def _target_ports(job: str) -> dict[str, int]:
    [config] = [j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == job]
    targets = [t for sc in config["static_configs"] for t in sc["targets"]]
    return {t.rsplit(":", 1)[0]: int(t.rsplit(":", 1)[1]) for t in targets}


def test_prometheus_scrapes_every_worker_on_the_port_it_listens_on() -> None:
    workers = {n: s for n, s in _guardstream_services().items() if _command(s)[:1] == ["worker"]}
    assert set(workers) == {"worker-1", "worker-2"}
    targets = _target_ports("guardstream-worker")
    assert set(targets) == set(workers)
    image_env = _dockerfile_env()
    for name, service in workers.items():
        env = {**image_env, **_env(service)}
        port = int(env.get("GUARDSTREAM_WORKER_WEB_PORT", Settings().worker_web_port))
        assert targets[name] == port, f"{name} listens on {port}, Prometheus scrapes {targets}"
        assert any(p.endswith(f":{port}") for p in service.get("ports", []))
        # It must listen beyond the container's loopback for Prometheus to reach it.
        assert env.get("GUARDSTREAM_HOST") == "0.0.0.0"
    assert re.search(rf"^EXPOSE {Settings().worker_web_port}$", DOCKERFILE, re.M)


def test_prometheus_scrapes_the_lag_exporter_on_its_port() -> None:
    exporter = SERVICES["lag-exporter"]
    cmd = _command(exporter)
    assert cmd[0] == "lag-exporter"
    port = int(_option(cmd, "--port") or lag_cli.exporter_port(Settings()))
    assert port == lag_cli.DEFAULT_EXPORTER_PORT
    assert _target_ports("guardstream-lag-exporter") == {"lag-exporter": port}
    assert any(p.endswith(f":{port}") for p in exporter["ports"])
    assert str(port) in " ".join(exporter["healthcheck"]["test"])
    # It reports the group the workers consume in.
    assert _option(cmd, "--group") == _env(exporter)["GUARDSTREAM_APP_ID"]


def _cli_paths() -> set[tuple[str, ...]]:
    from guardstream.cli import app

    root = typer.main.get_command(app)
    paths: set[tuple[str, ...]] = set()

    def walk(cmd: Any, prefix: tuple[str, ...]) -> None:
        paths.add(prefix)
        # Typer ships its own copy of click, so groups are recognised by their commands.
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


def _invocations() -> list[tuple[str, list[str]]]:
    """Every guardstream command line the compose file and the Dockerfile run."""
    out = []
    for name, service in _guardstream_services().items():
        cmd = _command(service)
        if cmd[:2] == ["sh", "-c"]:
            for part in re.split(r"&&|;", cmd[2]):
                words = shlex.split(part)
                assert words[0] == "guardstream", f"{name} runs {words[0]}"
                out.append((name, words[1:]))
        else:
            out.append((name, cmd))
    default = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))  # type: ignore[union-attr]
    out.append(("Dockerfile CMD", default))
    return out


@pytest.mark.parametrize(("where", "argv"), _invocations())
def test_every_command_compose_runs_exists(where: str, argv: list[str]) -> None:
    words = tuple(w for w in argv if not w.startswith("-"))
    paths = _cli_paths()
    # The longest prefix of the words that names a command must be a leaf command.
    matched = max((p for p in paths if words[: len(p)] == p), key=len)
    assert matched, f"{where}: `guardstream {' '.join(argv)}` is not a guardstream command"
    assert not any(len(p) > len(matched) and p[: len(matched)] == matched for p in paths), (
        f"{where}: `guardstream {' '.join(argv)}` names a command group, not a command"
    )


def test_dockerfile_health_check_probes_the_liveness_page() -> None:
    check = re.search(r"^HEALTHCHECK .*?CMD (.+)$", DOCKERFILE.replace("\\\n", " "), re.M)
    assert check, "the Dockerfile has no HEALTHCHECK"
    assert health.LIVE_PATH in check.group(1)
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M), "the image must not run as root"
    assert DOCKERFILE.startswith("# ") and "FROM python:3.11-slim" in DOCKERFILE
    assert re.search(r'^ENTRYPOINT \["guardstream"\]$', DOCKERFILE, re.M)


def test_grafana_loads_the_dashboards_from_where_compose_mounts_them() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provider = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "dashboards" / "guardstream.yml").read_text()
    )["providers"][0]
    assert provider["type"] == "file"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    [source] = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    url = urlparse(source["url"])
    assert source["type"] == "prometheus" and url.hostname == "prometheus"
    assert any(p.endswith(f":{url.port}") for p in SERVICES["prometheus"]["ports"])
    assert _prometheus_mount_ok()


def _prometheus_mount_ok() -> bool:
    """Prometheus gets the config and the rule files it names from one mounted directory."""
    prom = SERVICES["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"] if v.startswith("."))
    config_dir = mounts["./prometheus"]
    assert f"--config.file={config_dir}/prometheus.yml" in prom["command"]
    return all((REPO / "prometheus" / f).is_file() for f in PROMETHEUS["rule_files"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_valid_provisionable_grafana_json(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"].startswith("guardstream / ")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel answers"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}"
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)) == 4
