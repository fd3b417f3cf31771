"""The dev stack's local agents (`dispatcher run`): started beside the
dispatcher and restarted, with backoff, when they die.

One `Supervisor` per child process. Its thread starts the child, waits for
it, and when it exited without being asked to, logs a WARNING (exit code or
signal, the next delay) and starts it again after the delay: 1 s doubling to
30 s, back to 1 s once a run stayed up 60 s. A child that keeps dying is
logged each time and retried for ever; it never stops the dispatcher.
`stop()` ends it for good: no restart after it, the child terminated (then
killed) and reaped, the thread joined.

The restarted agent gets the same command line, so the same `--name` and
`--work-dir`: it finds what the previous one left there (muster_agent/state.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from muster_web.server import WebServer

_LOG = logging.getLogger("dispatcher.devstack")


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts: `first` doubling up to `longest`, back to
    `first` after a run that lasted `stable_after` seconds."""

    first: float = 1.0
    longest: float = 30.0
    stable_after: float = 60.0

    def next(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.stable_after:
            return self.first
        return min(previous * 2, self.longest)


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'signal SIGKILL' (Popen reports a signal as -N)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


class Supervisor:
    """Keeps one child process running until `stop()`."""

    def __init__(
        self,
        what: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        backoff: Backoff = Backoff(),
        stop_timeout: float = 15.0,
    ) -> None:
        self.what = what
        self._argv = list(argv)
        self._env = dict(env)
        self._log_path = log_path
        self._backoff = backoff
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name=f"supervise {what}", daemon=True)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id (None between runs)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising: no further start, the child stopped and reaped."""
        with self._lock:
            # Under the lock: the thread starts no child once this is set.
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _LOG.info("stopping the %s (pid %d)", self.what, proc.pid)
        if proc is not None:
            _terminate(proc, self._stop_timeout)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        delay: float | None = None
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                proc = self._spawn()
            started = time.monotonic()
            if proc is None:
                returncode: int | None = None
            else:
                returncode = proc.wait()
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - started
            delay = self._backoff.next(delay, uptime)
            how = "could not start" if returncode is None else describe_exit(returncode)
            pid = f" (pid {proc.pid})" if proc is not None else ""
            _LOG.warning(
                "%s%s exited with %s after %.1f s; restarting in %g s",
                self.what,
                pid,
                how,
                uptime,
                delay,
            )
            if self._stopping.wait(delay):
                return

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        try:
            with self._log_path.open("ab") as log:
                proc = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=self._env,
                    # Its own session: a Ctrl-C in the terminal reaches the
                    # dispatcher only, which stops its agents itself (so an
                    # agent never exits first and gets restarted mid-shutdown).
                    start_new_session=True,
                )
        except OSError as exc:
            _LOG.error("%s: cannot start %s: %s", self.what, self._argv[0], exc)
            self._proc = None
            return None
        self._proc = proc
        self.starts += 1
        _LOG.info("%s started (pid %d); log in %s", self.what, proc.pid, self._log_path)
        return proc


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _LOG.warning("pid %d did not stop within %.0f s: killing it", proc.pid, timeout)
        proc.kill()
        proc.wait()


def local_agents(
    address: str, instances: int, data_dir: Path, enrollment_secret: str
) -> Supervisor:
    """One supervised `muster-agent` process with `instances` render slots,
    its work folder and log under `data_dir/agent`, named `<host>-local`."""
    work_dir = data_dir / "agent"
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "muster_agent",
        "--dispatcher",
        address,
        "--instances",
        str(instances),
        "--name",
        f"{socket.gethostname()}-local",
        "--work-dir",
        str(work_dir),
    ]
    env = {
        **os.environ,
        "MUSTER_ENROLLMENT_SECRET": enrollment_secret,
        # The agents stop when this process dies, even by SIGKILL.
        "MUSTER_AGENT_PARENT_PID": str(os.getpid()),
    }
    _LOG.info("starting %d local agent instance(s)", instances)
    return Supervisor("local agent", argv, env, work_dir / "agent.log")


def local_dashboard(address: str) -> WebServer | None:
    """The web dashboard (muster_web) serving beside the dispatcher at
    `address`, started; None when MUSTER_WEB=0 or it cannot start (logged:
    the dispatcher runs on without it)."""
    from muster_web.server import WebServer
    from muster_web.settings import WebSettings, WebSettingsError

    host, _, port = address.rpartition(":")
    if host.strip("[]") in ("0.0.0.0", "::", ""):
        address = f"127.0.0.1:{port}"
    try:
        settings = WebSettings.from_env()
        if not settings.enabled:
            return None
        server = WebServer(settings, address)
    except (WebSettingsError, OSError) as exc:
        _LOG.error("the web dashboard cannot start: %s", exc)
        return None
    server.start()
    return server
