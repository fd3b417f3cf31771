"""A JSON-lines worker subprocess: user code (hooks, templates) runs there.

The worker reads one JSON request a line on stdin and writes one JSON answer
a line on stdout, after a first line `{"ready": true}` once it has started
and loaded what it needs. Each call has a time limit; a worker that overruns
it, dies or does not start in time is killed, and the next call starts a new
one. What the worker writes on stderr goes to a log, line by line, at INFO;
a line written by `log_line` (a record, traceback included, in one JSON
line) goes at its own level.

Used by the dispatcher's hook runner (muster_services/jobs/hooks.py) and the agent's
template host (muster_agent/template_host.py).
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

LOG_LINE_KEY = "muster_worker_log"


def log_line(level: int, text: str) -> str:
    """A stderr line the worker's parent logs at `level` (text may hold
    newlines: a traceback stays one record)."""
    return json.dumps({LOG_LINE_KEY: logging.getLevelName(level), "text": text})


class LogLineFormatter(logging.Formatter):
    """Formats a worker's own log records as `log_line`s."""

    def format(self, record: logging.LogRecord) -> str:
        return log_line(record.levelno, super().format(record))


def _relayed(line: str) -> tuple[int, str]:
    """(level, text) of a stderr line."""
    if line.startswith("{") and LOG_LINE_KEY in line:
        try:
            record = json.loads(line)
            level = logging.getLevelName(str(record[LOG_LINE_KEY]))
            if isinstance(level, int):
                return level, str(record["text"])
        except (ValueError, KeyError, TypeError):
            pass
    return logging.INFO, line


class WorkerError(Exception):
    """The worker died, overran its time or did not start; the message says which."""


class Worker:
    """One worker process at a time, started on the first call."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log: logging.Logger,
        environment: Callable[[], Mapping[str, str]],
        startup_seconds: Callable[[], float],
        on_start: Callable[[Worker], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        # "the hook worker", "the template host": said in errors and the log.
        self.name = name
        self._log = log
        self._environment = environment
        self._startup_seconds = startup_seconds
        # Called (under the lock) right after a new process said it is ready,
        # to bring it up to date (the template host reloads its sources).
        self._on_start = on_start
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str] = queue.Queue()
        # The worker's output ended (it died, or is dying: its exit status may
        # not be there yet when its pipe closes).
        self._ended = False
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """The worker's answer to `request` (raises WorkerError)."""
        with self._lock:
            if not self.alive:
                self._proc = self._started()
                if self._on_start is not None:
                    self._on_start(self)
            return self._exchange(request, timeout)

    def _exchange(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._stop()
            raise WorkerError(f"{self.name} died") from None
        answer = self._read(timeout)
        if answer is None:
            died = self._ended or proc.poll() is not None
            self._stop()
            if died:
                raise WorkerError(f"{self.name} died")
            raise WorkerError(f"no answer within {timeout:g}s")
        return answer

    def _started(self) -> subprocess.Popen[str]:
        """A new worker once it said it is ready. Starting Python and loading
        the user's files is not a call's time: on a busy machine it can take
        longer than a call's limit."""
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(self._environment()),
        )
        self._proc = proc
        self.starts += 1
        answers: queue.Queue[str] = queue.Queue()
        self._answers = answers
        self._ended = False
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None

        def read() -> None:
            for line in stdout:
                answers.put(line)
            answers.put("")  # end of output: the worker is gone

        def relay() -> None:
            for line in stderr:
                level, text = _relayed(line.rstrip())
                self._log.log(level, "%s: %s", self.name, text)

        threading.Thread(target=read, name=f"{self.name} output", daemon=True).start()
        threading.Thread(target=relay, name=f"{self.name} stderr", daemon=True).start()
        allowance = self._startup_seconds()
        if self._read(allowance) != {"ready": True}:
            self._log.error("%s did not start within %.0fs and was stopped", self.name, allowance)
            self._stop()
            raise WorkerError(f"{self.name} did not start within {allowance:.0f}s")
        return proc

    def _read(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            return None
        if not line:
            self._ended = True
            return None
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()
