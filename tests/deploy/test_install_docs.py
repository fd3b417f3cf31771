"""Every command of docs/install.md, run: the wheels `make dist` builds, the
client installed with a DCC's interpreter (a clean Python here) and imported
from its folder, a workstation's client with `muster`, a render node's agent
with its unit and environment file, checked by `systemd-analyze verify` and
started as systemd would start it (this machine has no systemd to ask), and
the dispatcher installed, migrated and serving. Paths under /opt, /etc and
/var/lib live in a temporary folder; the page's dispatcher and database
addresses are the test's own, and a server listens on loopback only. A
command this test does not know fails it."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import MDispatcherAPI
import pytest

from muster_services.core.database import drop_database, ensure_database, with_database
from tests.conftest import new_database_name
from tests.e2e.test_render import eventually
from tests.support import READY, REPO, InProcessServer

DOC = REPO / "docs" / "install.md"
PAGE_DISPATCHER = "dispatcher.studio.example:50051"
PAGE_DATABASE = "postgresql://muster@db.studio.example/muster"
PAGE_DCC_PYTHON = "/usr/autodesk/maya2025/bin/mayapy"


def commands() -> list[str]:
    """The page's shell commands, in order."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


class Machine:
    """The page's machines in one temporary folder."""

    def __init__(self, root: Path, wheels: Path, dispatcher: str, database: str) -> None:
        self.root = root
        self.wheels = wheels
        self.dispatcher = dispatcher
        self.database = database
        self.dcc = root / "dcc"
        subprocess.run([sys.executable, "-m", "venv", str(self.dcc)], check=True, timeout=120)
        self.started: list[subprocess.Popen[str]] = []
        self.ran: list[str] = []

    def local(self, command: str) -> str:
        """The command with the page's paths and addresses made this test's."""
        command = command.replace(PAGE_DCC_PYTHON, str(self.dcc / "bin" / "python"))
        command = command.replace(PAGE_DISPATCHER, self.dispatcher)
        command = command.replace(PAGE_DATABASE, self.database)
        command = re.sub(r"(?<![\w/.])dist/", f"{self.wheels}/", command)
        return re.sub(r"(?<![\w.])/(opt|etc|var/lib)/", rf"{self.root}/\1/", command)

    def shell(self, command: str) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.root,
            # The dispatcher's own commands (`dispatcher enrollment-secret`) from this checkout.
            # Installs skip compiling every module to bytecode: time, not behaviour.
            env={
                **os.environ,
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                "PIP_NO_COMPILE": "1",
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def run(self, command: str) -> None:
        self.ran.append(command)
        words = shlex.split(command)
        if command == "make dist":
            # Built once for the deploy tests from the files the image copies
            # (tests/deploy/conftest.py): the same `pip wheel` of the same three projects.
            assert {p.name for p in self.wheels.glob("*.whl")} == set(
                re.findall(r"dist/(\S+?\.whl)", DOC.read_text())
            ), "the page names other wheels than `make dist` builds"
        elif words[:2] == ["systemctl", "daemon-reload"]:
            pass  # nothing to reload without systemd: the unit is verified and started below
        elif words[:3] == ["systemctl", "enable", "--now"]:
            self.start_unit(self.root / "etc" / "systemd" / "system" / f"{words[3]}.service")
        elif " serve " in command:
            self.serve(self.local(command))
        else:
            self.shell(self.local(command))

    def start_unit(self, unit: Path) -> None:
        """Start the unit's command with its environment, as systemd would."""
        fields = dict(
            line.split("=", 1) for line in unit.read_text().splitlines() if re.match(r"^\w+=", line)
        )
        env = {}
        for line in Path(self.local(fields["EnvironmentFile"])).read_text().splitlines():
            if re.match(r"^\w+=", line):
                key, value = line.split("=", 1)
                env[key] = self.local(value)
        key, value = fields["Environment"].split("=", 1)
        env[key] = self.local(value)
        env["MUSTER_AGENT_DISCOVERY"] = "off"  # scan answers would share port 50052
        Path(env["MUSTER_AGENT_DIR"]).mkdir(parents=True, exist_ok=True)
        log = (self.root / "agent.log").open("w")
        self.started.append(
            subprocess.Popen(
                shlex.split(fields["ExecStart"]),
                cwd=self.root,
                env={k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")} | env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    def serve(self, command: str) -> None:
        """A server of the page: on loopback, until it is ready; then stopped."""
        command = command.replace("MUSTER_LISTEN=0.0.0.0:50051", "MUSTER_LISTEN=127.0.0.1:0")
        assert "0.0.0.0" not in command
        server = subprocess.Popen(
            ["bash", "-c", f"exec env {command}"],
            cwd=self.root,
            env={**os.environ, "MUSTER_METRICS_LISTEN": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert server.stdout is not None
        seen = []
        for line in server.stdout:
            seen.append(line)
            if READY.search(line.rstrip()):
                break
        server.terminate()
        server.wait(60)
        assert any(READY.search(line.rstrip()) for line in seen), "".join(seen)

    def stop(self) -> None:
        for process in self.started:
            process.kill()
            process.wait(30)


@pytest.fixture
def machine(
    tmp_path: Path,
    wheels: dict[str, Path],
    dispatcher: str,
    dispatcher_server: InProcessServer,
    embedded_admin_url: str,
) -> Iterator[Machine]:
    """The page's machines; its PostgreSQL server is an empty database of the embedded one."""
    name = new_database_name()
    ensure_database(embedded_admin_url, name)
    url = with_database(embedded_admin_url, name).render_as_string(hide_password=False)
    folder = next(iter(wheels.values())).parent
    made = Machine(tmp_path, folder, dispatcher_server.address, url)
    try:
        yield made
    finally:
        made.stop()
        drop_database(embedded_admin_url, name)


def test_the_page_has_commands_for_each_audience() -> None:
    found = commands()
    assert "make dist" in found
    assert any("--print-systemd-unit" in c for c in found)
    assert any(c.startswith(PAGE_DCC_PYTHON) for c in found)
    assert any(" serve " in c for c in found)


def test_every_command_of_the_page_runs(machine: Machine) -> None:
    for command in commands():
        machine.run(command)
    assert machine.ran == commands()
    # The render node's agent, started from its unit, enrolled and is online
    # under its default name, the host name.

    def online() -> bool:
        _, nodes = MDispatcherAPI.nodeGetList()
        return socket.gethostname() in [node.getName() for node in nodes]

    assert eventually(online, what="the installed render node online"), (
        machine.root / "agent.log"
    ).read_text()
    # The DCC's folder holds the client and nothing of the server.
    libs = machine.root / "opt" / "studio" / "python" / "maya2025"
    assert (libs / "MDispatcherAPI.py").is_file()
    assert not (libs / "muster_services").exists()
