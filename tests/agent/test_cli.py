"""The `muster-agent` program as a process: options, refusals, restart command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from muster_agent.cli import restart_argv
from tests.support import REPO


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "muster_agent", *args],
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


def test_without_a_dispatcher_it_retries_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # A port nobody listens on: the sessions back off and retry until stopped.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--dispatcher", f"127.0.0.1:{port}", "--instances", "2", "--work-dir", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "muster_agent", *args],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    retries = 0
    started = time.monotonic()
    for line in process.stderr:
        retries += "reconnecting in" in line
        if retries >= 4 or time.monotonic() - started > 10:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert retries >= 4
    assert (tmp_path / "agent.lock").exists()


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited, waiting for init to reap it


def test_an_agent_started_by_a_dispatcher_stops_when_that_process_dies(tmp_path: Path) -> None:
    # `dispatcher run` starts its local agents with MUSTER_AGENT_PARENT_PID; a
    # parent killed by SIGKILL cannot stop them itself.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'muster_agent', '--dispatcher',"
        f" '127.0.0.1:{port}', '--work-dir', {str(tmp_path)!r}],"
        " env={**os.environ, 'MUSTER_AGENT_PARENT_PID': str(os.getpid())},"
        " stderr=open(os.path.join(" + repr(str(tmp_path)) + ", 'agent.log'), 'w'))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    agent_pid = int(parent.stdout.readline())
    time.sleep(2)
    assert not _gone(agent_pid)  # alive while its parent lives
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 15
    while not _gone(agent_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(agent_pid), (tmp_path / "agent.log").read_text()
    assert "is gone: stopping" in (tmp_path / "agent.log").read_text()


def test_the_agent_process_runs_without_python_s_ssl_and_openssl() -> None:
    """Its TLS is gRPC's own (tests/security/test_tls.py runs agents over
    mTLS); leaving out the ssl module keeps OpenSSL's libraries out too."""
    probe = (
        "import sys\n"
        "from muster_agent.__main__ import run\n"
        "sys.argv = ['muster-agent', '--help']\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0\n"
        "import asyncio.base_events\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(sys.modules['ssl'], asyncio.base_events.ssl, 'libssl' in maps)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "None None False"


def test_the_idle_agent_loads_neither_openssl_s_hashes_nor_the_template_engine() -> None:
    """What an idle agent keeps out of memory (docs/agent.md, Memory): hashlib
    uses Python's own hashes (no libcrypto), and the template engine and the
    MTemplateAPI classes are the template host's, not the agent's."""
    probe = (
        "import sys\n"
        "from muster_agent.__main__ import run\n"
        "sys.argv = ['muster-agent', '--help']\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0\n"
        "import hashlib\n"
        "assert hashlib.sha256(b'x').hexdigest().startswith('2d711642')\n"
        "maps = open('/proc/self/maps').read()\n"
        "engine = ('muster_gateway.template_engine', 'muster_gateway.mtemplate', 'MClientAPI')\n"
        "loaded = [m for m in engine if m in sys.modules]\n"
        "print('libcrypto' in maps, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False []"
