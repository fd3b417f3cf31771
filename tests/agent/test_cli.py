"""The `muster-agent` program as a process: options, refusals, restart command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.cli import restart_argv
from tests.support import REPO


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **(env or {})},
    )


def test_help_names_every_option() -> None:
    done = agent("--help")
    assert done.returncode == 0
    for option in ("--dispatcher", "--instances", "--name", "--work-dir", "--config"):
        assert option in done.stdout


def test_a_bad_configuration_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text('{"system_events": {"reboot": 1}}')
    done = agent("--dispatcher", "farm:1", "--config", str(tmp_path / "agent.json"))
    assert done.returncode == 2
    assert done.stderr.startswith("muster-agent: ")
    assert "reboot" in done.stderr


def test_no_dispatcher_address_is_a_clear_error(tmp_path: Path) -> None:
    env = {"MUSTER_DISPATCHER": "", "MUSTER_CLIENT_CONFIG": str(tmp_path / "none.json")}
    done = agent("--work-dir", str(tmp_path), env=env)
    assert done.returncode == 2
    assert "no dispatcher address" in done.stderr


def test_the_restart_command_line_is_the_one_started() -> None:
    argv = restart_argv()
    assert argv[0] == sys.executable
    assert argv[1:] == sys.orig_argv[1:]
