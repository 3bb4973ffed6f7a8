"""guardstream installed from its wheel, not from the source tree, runs against the real stack.

The test builds a wheel of the repository (`pip wheel --no-deps`), installs it (not
editable) into a fresh virtualenv, letting pip resolve the dependencies as a user's install
would (from pip's cache when it has them), and runs the installed `guardstream` from a
directory outside the repository: `schemas register`, then `demo`. The schemas and the
default config must come from the wheel's package data, so nothing may point back at the
checkout (no PYTHONPATH, no GUARDSTREAM_*_FILE or GUARDSTREAM_SCHEMA_DIR).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from guardstream.config.settings import Settings
from guardstream.ops.worker_process import worker_env
from tests import REPO_ROOT, free_port

pytestmark = pytest.mark.integration

# Settings that would make the installed package read files from the checkout.
_POINTS_AT_FILES = (
    "GUARDSTREAM_SCHEMA_DIR",
    "GUARDSTREAM_MODEL_CATALOG",
    "GUARDSTREAM_TIERS_FILE",
    "GUARDSTREAM_DEMO_TENANTS_FILE",
)


def _run(
    cmd: list[str], timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{output}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with guardstream installed from a wheel of the repository."""
    root = tmp_path_factory.mktemp("wheel")
    dist, venv = root / "dist", root / "venv"
    t0 = time.monotonic()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO_ROOT)], timeout=300)
    [wheel] = dist.glob("guardstream-*.whl")
    t1 = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    _run(
        [python, "-m", "pip", "--disable-pip-version-check", "install", "-q", str(wheel)],
        timeout=600,
    )
    t2 = time.monotonic()
    print(f"wheel built in {t1 - t0:.1f} s, installed with its dependencies in {t2 - t1:.1f} s")
    return venv


def _env(settings: Settings, venv: Path) -> dict[str, str]:
    env = worker_env(settings)
    for name in (*_POINTS_AT_FILES, "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_wheel_install_registers_schemas_and_runs_the_demo(
    stack: Settings, installed: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    own = stack.model_copy(
        update={
            "topic_prefix": f"gswheel{run}",
            "app_id": f"gswheel{run}",
            "worker_web_port": free_port(),
            "worker_state_dir": tmp_path / "state",
        }
    )
    env = _env(own, installed)
    cwd = tmp_path / "elsewhere"  # not the repository: no `schemas/`, `config/` or `.env`
    cwd.mkdir()

    # guardstream itself, its schemas and its config come from the new virtualenv.
    where = _run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import guardstream\n"
            "from guardstream.config.settings import Settings\n"
            "s = Settings()\n"
            "for p in (guardstream.__file__, s.schema_dir, s.model_catalog, s.tiers_file,"
            " s.demo_tenants_file):\n"
            "    print(p)",
        ],
        timeout=60,
        cwd=cwd,
        env=env,
    )
    paths = [Path(line) for line in where.stdout.split()]
    assert len(paths) == 5, where.stdout
    for path in paths:
        assert path.resolve().is_relative_to(installed.resolve()), (path, installed)
        assert path.exists(), path
    assert sorted(p.name for p in paths[1].glob("*.avsc")) == sorted(
        p.name for p in (REPO_ROOT / "schemas").glob("*.avsc")
    )

    guardstream = str(installed / "bin" / "guardstream")
    registered = _run([guardstream, "schemas", "register"], timeout=120, cwd=cwd, env=env)
    assert f"{own.topic_prefix}.requests-value" in registered.stdout, registered.stdout

    count = 10
    t0 = time.monotonic()
    demo = _run(
        [guardstream, "demo", "-n", str(count), "--timeout", "180"], timeout=400, cwd=cwd, env=env
    )
    print(f"demo from the wheel install took {time.monotonic() - t0:.1f} s")
    decisions = re.findall(r"^(?:ADMITTED|REJECTED) ", demo.stdout, flags=re.MULTILINE)
    assert len(decisions) == count, demo.stdout
    assert f"demo done: {count} decisions" in demo.stdout, demo.stdout
