"""The launcher (muster_agent/launch.py): a chunk's process group dies with its agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from muster_agent.lease import Lease
from muster_agent.system import group_alive, group_members, launch_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def launch(*command: str, parent: int = 0, **popen: object) -> tuple[subprocess.Popen[bytes], int]:
    """The launcher running `command` as this process's child, and the read end
    of its status pipe."""
    status_read, status_write = os.pipe()
    argv = launch_command(command[0], command[1:], status_write)
    if parent:
        argv[argv.index("--parent") + 1] = str(parent)
    try:
        process = subprocess.Popen(
            argv,
            pass_fds=(status_write,),
            start_new_session=True,
            **popen,  # type: ignore[call-overload]
        )
    finally:
        os.close(status_write)
    return process, status_read


def status(fd: int) -> str:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read().decode()


def members_within(pgid: int, seconds: float = 2.0) -> list[int]:
    """The group's live members once it is empty, or when `seconds` passed."""
    deadline = time.monotonic() + seconds
    members = group_members(pgid) or []
    while members and time.monotonic() < deadline:
        time.sleep(0.02)
        members = group_members(pgid) or []
    return members


def test_the_launcher_exits_with_the_render_process_code() -> None:
    process, fd = launch("/bin/sh", "-c", "exit 3")
    assert status(fd) == ""  # started
    assert process.wait(10) == 3


def test_a_render_process_killed_by_a_signal_shows_as_killed_by_it() -> None:
    process, fd = launch("/bin/sh", "-c", "kill -TERM $$")
    assert status(fd) == ""
    assert process.wait(10) == -signal.SIGTERM


def test_the_group_s_sigterm_is_for_the_render_process_which_decides_when_to_end() -> None:
    script = "trap 'echo cleaning; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    process, fd = launch("/bin/sh", "-c", script, stdout=subprocess.PIPE)
    assert status(fd) == ""
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(10) == 0  # the launcher stayed and reported the renderer's code
    assert process.stdout.read() == b"cleaning\n"


def test_a_render_process_that_cannot_start_is_reported_through_the_status_pipe() -> None:
    process, fd = launch("/no/such/renderer")
    assert status(fd) == f"{2} No such file or directory"
    assert process.wait(10) == 127


def test_the_render_process_gets_default_signal_dispositions() -> None:
    # Python ignores SIGPIPE; the launcher must not pass that on (SigIgn mask in /proc).
    process, fd = launch("/bin/sh", "-c", "grep SigIgn /proc/self/status", stdout=subprocess.PIPE)
    assert status(fd) == ""
    out, _ = process.communicate(timeout=10)
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGTERM - 1))


def test_a_launcher_whose_agent_is_already_gone_kills_its_group_before_starting(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    process, fd = launch("/bin/sh", "-c", f"touch {marker}", parent=1)  # not its parent
    assert process.wait(10) == -signal.SIGKILL
    assert status(fd) == ""
    assert not marker.exists()


def test_when_the_agent_dies_by_sigkill_the_whole_group_dies_within_moments() -> None:
    """A stand-in agent (a Python process) starts the launcher from its main
    thread, as the agent does from its event loop's, and is SIGKILLed."""
    stand_in = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "from muster_agent.system import launch_command\n"
            "r, w = os.pipe()\n"
            "argv = launch_command('/bin/sh', ['-c', 'sleep 60 & sleep 60'], w)\n"
            "p = subprocess.Popen(argv, pass_fds=(w,), start_new_session=True)\n"
            "os.close(w); os.read(r, 100)\n"  # EOF: the render process started
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert stand_in.stdout is not None
    pgid = int(stand_in.stdout.readline())
    # The launcher, the shell and its two sleeps.
    deadline = time.monotonic() + 5
    while len(group_members(pgid) or []) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(group_members(pgid) or []) == 4
    stand_in.kill()
    stand_in.wait(10)
    assert members_within(pgid, 2.0) == []
    assert not group_alive(pgid)


def _leased(tmp_path: Path, seconds_left: float) -> Lease:
    lease = Lease(tmp_path / "leases" / "instance-0")
    lease.register_sent()
    lease.accepted(seconds_left)
    return lease


def test_a_render_stops_once_its_agent_s_lease_runs_out(tmp_path: Path) -> None:
    """The agent stays alive but stops renewing (as a stopped agent would):
    the launcher kills the whole group soon after the deadline."""
    lease = _leased(tmp_path, 1.0)
    status_read, status_write = os.pipe()
    argv = launch_command("/bin/sh", ["-c", "sleep 60 & sleep 60"], status_write, None, lease.path)
    started = time.monotonic()
    process = subprocess.Popen(argv, pass_fds=(status_write,), start_new_session=True)
    os.close(status_write)
    assert status(status_read) == ""
    assert process.wait(5) == -signal.SIGKILL
    assert 0.9 < time.monotonic() - started < 2.5
    assert members_within(process.pid, 2.0) == []
    assert lease.expired()


def test_a_lease_renewed_in_time_lets_the_render_finish(tmp_path: Path) -> None:
    lease = _leased(tmp_path, 0.8)
    status_read, status_write = os.pipe()
    argv = launch_command("/bin/sh", ["-c", "sleep 2; exit 3"], status_write, None, lease.path)
    process = subprocess.Popen(argv, pass_fds=(status_write,), start_new_session=True)
    os.close(status_write)
    assert status(status_read) == ""
    sequence = 0
    while process.poll() is None:
        sequence += 1
        lease.heartbeat_sent(sequence)
        lease.recorded(sequence, 0.8)
        time.sleep(0.2)
    assert process.returncode == 3


def test_an_answer_for_a_heartbeat_never_sent_renews_nothing(tmp_path: Path) -> None:
    lease = _leased(tmp_path, 5.0)
    deadline = lease.deadline
    lease.recorded(7, 60.0)  # not sent on this stream (sent before a new Register)
    assert lease.deadline == deadline
    lease.heartbeat_sent(8)
    lease.recorded(8, 60.0)
    assert lease.deadline > deadline + 50
    lease.recorded(8, 60.0)  # answered once: a repeat changes nothing
    assert lease.deadline > deadline + 50


def test_a_dispatcher_without_leases_never_stops_a_render(tmp_path: Path) -> None:
    lease = _leased(tmp_path, 0.0)
    assert lease.deadline == float("inf")
    assert not lease.expired()
