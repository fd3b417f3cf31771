"""Shared by the deploy tests: the three wheels, and a whole dispatcher
(tests/gateway's) for the installed distributions' tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_image import copy_build_context
from tests.gateway.conftest import dispatcher, dispatcher_database, dispatcher_server
from tools import distributions

__all__ = ["dispatcher", "dispatcher_database", "dispatcher_server", "pip", "wheels"]


def pip(python: Path | str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three wheels by distribution name, as `make dist` builds them."""
    root = tmp_path_factory.mktemp("dist")
    copy_build_context(root / "src")
    out = root / "wheels"
    built = pip(
        sys.executable,
        "wheel",
        "--quiet",
        "--no-deps",
        "--wheel-dir",
        str(out),
        "./packaging/client",
        "./packaging/render-node",
        ".",
        cwd=root / "src",
    )
    assert built.returncode == 0, built.stdout + built.stderr
    found = {}
    for wheel in out.glob("*.whl"):
        name = wheel.name.split("-")[0].replace("_", "-")
        found[name] = wheel
    assert set(found) == set(distributions.PROJECTS), found
    return found
