"""The `muster` command against a real dispatcher and real agents (tests/e2e's fixtures)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from muster_cli.app import app, reset
from muster_cli.main import main as _main  # noqa: F401  (registers every command)

# tests/e2e's fixtures and report hook.
from tests.e2e.conftest import dispatcher, pytest_runtest_makereport, start_agent  # noqa: F401
from tests.support import DispatcherProcess


class Muster:
    """Runs `muster ARGS` in-process (typer's CliRunner) against one dispatcher."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int | None = 0, env: dict[str, str] | None = None) -> Any:
        """The result; its exit code must be `code` (None: any)."""
        reset()
        merged = {**self.env, **(env or {})}
        saved = {k: os.environ.get(k) for k in merged}
        os.environ.update({k: v for k, v in merged.items()})
        for k in [k for k, v in merged.items() if v == ""]:
            del os.environ[k]
        try:
            result = self.runner.invoke(app, list(args), prog_name="muster")
        finally:
            reset()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert code is None or result.exit_code == code, (
            f"muster {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def muster(dispatcher: DispatcherProcess, tmp_path: Path) -> Iterator[Muster]:  # noqa: F811
    env = {
        **dispatcher.facade_env(),
        "MUSTER_SESSION_FILE": str(tmp_path / "session.json"),
        "MUSTER_CLIENT_CONFIG": str(tmp_path / "no-client.json"),
    }
    yield Muster(env)
