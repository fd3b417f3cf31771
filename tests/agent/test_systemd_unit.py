"""The systemd unit shipped for the agent (deploy/systemd/muster-agent.service)."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from muster_agent.cli import SETTLE_SECONDS
from muster_agent.config import DEFAULT_KILL_GRACE_SECONDS

REPO = Path(__file__).parents[2]
UNIT = REPO / "deploy" / "systemd" / "muster-agent.service"
ENV_EXAMPLE = REPO / "deploy" / "systemd" / "agent.env.example"


def unit() -> configparser.ConfigParser:
    # strict: a key given twice is an error (systemd would take both or the last).
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_kills_every_process_of_the_agent_and_restarts_it_on_failure() -> None:
    service = unit()["Service"]
    assert service["KillMode"] == "control-group"
    assert service["Restart"] == "on-failure"
    assert service["SendSIGKILL"] == "yes"
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].split()[0].endswith("/muster-agent")
    assert len(service["ExecStart"].split()) == 1  # options come from the environment file
    assert service["EnvironmentFile"] == "/etc/muster/agent.env"
    assert service["Environment"] == "MUSTER_AGENT_DIR=/var/lib/muster-agent"
    assert service["StateDirectory"] == "muster-agent"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_a_stop_gives_the_agent_time_to_kill_and_report_its_chunks() -> None:
    # The default kill grace period, then the wait for the dispatcher, fit in the stop timeout.
    budget = DEFAULT_KILL_GRACE_SECONDS + SETTLE_SECONDS
    assert float(unit()["Service"]["TimeoutStopSec"]) > budget


def test_a_configuration_error_is_not_restarted_in_a_loop(tmp_path: Path) -> None:
    # The exit code the unit does not restart on is the agent's for a bad configuration.
    assert unit()["Service"]["RestartPreventExitStatus"] == "2"
    bad = subprocess.run(
        [sys.executable, "-m", "muster_agent", "--instances", "0", "--work-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2, bad.stderr


def test_the_example_environment_file_names_only_variables_the_agent_reads() -> None:
    config = (REPO / "muster_agent" / "config.py").read_text() + (
        REPO / "muster_gateway" / "tls.py"
    ).read_text()
    names = [
        line.lstrip("#").split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and line.lstrip("#").split("=", 1)[0].isupper()
    ]
    assert "MUSTER_DISPATCHER" in names
    for name in names:
        assert f'"{name}"' in config, name


def test_the_agent_prints_the_unit_that_starts_this_installation(tmp_path: Path) -> None:
    """`--print-systemd-unit` is the shipped unit with ExecStart naming the
    agent that printed it (docs/install.md); the wheel's copy is tested in
    tests/deploy/test_distributions.py."""
    printed = subprocess.run(
        [sys.executable, "-m", "muster_agent", "--print-systemd-unit"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert printed.returncode == 0, printed.stderr
    shipped = UNIT.read_text().splitlines()
    lines = printed.stdout.splitlines()
    assert len(lines) == len(shipped)
    changed = [(a, b) for a, b in zip(shipped, lines, strict=True) if a != b]
    assert changed == [
        (
            "ExecStart=/opt/muster/venv/bin/muster-agent",
            f"ExecStart={sys.executable} -m muster_agent",
        )
    ]
    env = subprocess.run(
        [sys.executable, "-m", "muster_agent", "--print-systemd-env"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert env.stdout == ENV_EXAMPLE.read_text()
