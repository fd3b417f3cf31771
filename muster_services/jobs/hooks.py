"""The dispatcher side of hooks: a worker process and the calls into it.

Validators (`onValidateJobSubmission`, ...) are called synchronously where
the decision is made, with a time limit; reactions (`onSubmitJob`,
`onJobCompleted`, ...) run from the event bus after the change committed.
A hook that raises is logged with its traceback; one that overruns its time
is abandoned (its worker killed and restarted). Either way the service goes
on: a validator that fails or times out does not block the submission.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from muster_gateway.worker import Worker, WorkerError
from muster_services.core import metrics
from muster_services.jobs import topics

_LOG = logging.getLogger(__name__)

# Bus topic -> the hooks it fires, in order.
REACTIONS: dict[str, tuple[str, ...]] = {
    topics.JOB_SUBMITTED: ("onSubmitJob",),
    topics.JOB_DELETED: ("onDeleteJob",),
    topics.JOB_REINIT: ("onReinitJob",),
    topics.JOB_EDITED: ("onEditJob",),
    topics.JOB_PROPERTIES_CHANGED: ("onJobPropertiesChanged",),
    topics.JOB_STARTED: ("onJobStart",),
    topics.JOB_COMPLETED: ("onJobCompleted", "onJobEnd"),
}


class HookError(Exception):
    """A hook raised or overran its time (already logged)."""


def encode(value: Any) -> Any:
    """Arguments for the worker: MJob/MChunk travel as their message bytes."""
    if isinstance(value, Message):
        kind = "MChunk" if type(value).__name__ == "Chunk" else "MJob"
        return {kind: base64.b64encode(value.SerializeToString()).decode()}
    return value


class HookRunner:
    # How long a new worker may take to start and load the hook files, on top
    # of which each call gets its own timeout.
    STARTUP_SECONDS = 30.0

    def __init__(
        self,
        folder: Path,
        dispatcher_address: str = "",
        timeout: float = 10.0,
        token: Callable[[], str] | None = None,
        templates_folder: Path | None = None,
    ) -> None:
        self.folder = folder
        # The studio's templates folder: their classes' dispatcher callbacks
        # run in the worker too (muster_gateway/hook_worker.py).
        self.templates_folder = templates_folder
        self.dispatcher_address = dispatcher_address
        self.timeout = timeout
        # The dispatcher's own identity for MDispatcherAPI inside hooks.
        self.token = token
        self._ids = itertools.count(1)
        # Starting Python and loading the hook files is not the hook's time: on
        # a busy node it can take longer than a validator's limit, and a
        # validator skipped because its worker was cold would let through what
        # it exists to refuse.
        self._worker = Worker(
            [sys.executable, "-m", "muster_gateway.hook_worker", str(folder)]
            + ([str(templates_folder)] if templates_folder is not None else []),
            name="the hook worker",
            log=_LOG,
            environment=self._environment,
            startup_seconds=lambda: max(self.STARTUP_SECONDS, self.timeout),
        )
        # The functions the hook files define, for the files as they were.
        self._defined: tuple[tuple[tuple[str, float], ...], frozenset[str]] = ((), frozenset())

    @property
    def enabled(self) -> bool:
        """A hook file exists, or a studio template defines a dispatcher callback."""
        if self.folder.is_dir() and any(self.folder.glob("*.py")):
            return True
        return self.templates_folder is not None and bool(self._defined_names())

    def _stamp(self) -> tuple[tuple[str, float], ...]:
        stamps = []
        for prefix, folder in (("", self.folder), ("templates/", self.templates_folder)):
            if folder is None or not folder.is_dir():
                continue
            for path in folder.glob("*.py"):
                with contextlib.suppress(OSError):
                    stamps.append((prefix + path.name, path.stat().st_mtime))
        return tuple(sorted(stamps))

    def defines(self, hook: str) -> bool:
        """Whether some hook file or template defines `hook`: callers skip the
        work of preparing a call that nothing would answer (per-chunk hooks in
        the scheduler)."""
        return hook in self._defined_names()

    def _defined_names(self) -> frozenset[str]:
        """The contexts the files define (asked of the worker once per change of the files)."""
        stamp = self._stamp()
        if not stamp:
            return frozenset()
        known, names = self._defined
        if known != stamp:
            try:
                answer = self.call("__defined__")
            except HookError:
                return frozenset()
            names = frozenset(answer.get("value") or ())
            self._defined = (stamp, names)
        return names

    def _environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "MUSTER_RUNNING_CONTEXT": "dispatcher",
            "MUSTER_USER": "dispatcher",
        }
        if self.dispatcher_address:
            env["MUSTER_DISPATCHER"] = self.dispatcher_address
        if self.token is not None:
            env["MUSTER_TOKEN"] = self.token()
        return env

    def call(
        self, hook: str, *args: Any, template_id: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Run every `hook` function; returns {"accept", "reason"?, "value"?, "ran"}."""
        if hook != "__defined__" and not self.enabled:
            return {"accept": True, "ran": 0}
        request = {
            "id": next(self._ids),
            "hook": hook,
            "template_id": template_id,
            "args": [encode(a) for a in args],
        }
        limit = timeout or self.timeout
        with metrics.HOOKS.timed(hook):
            try:
                answer = self._worker.call(request, limit)
            except WorkerError as exc:
                if "no answer" in str(exc):
                    _LOG.error("hook %s overran %.1fs and was stopped", hook, limit)
                raise HookError(f"{hook}: {exc}") from None
            if "error" in answer:
                _LOG.error("hook %s failed: %s\n%s", hook, answer["error"], answer.get("traceback"))
                raise HookError(f"{hook}: {answer['error']}")
        return answer

    def validate(self, hook: str, *args: Any, template_id: int | None = None) -> str | None:
        """A validator's refusal reason, or None to go ahead (also when it failed)."""
        try:
            answer = self.call(hook, *args, template_id=template_id)
        except HookError:
            return None
        if answer.get("accept", True):
            return None
        return str(answer.get("reason") or "refused by a dispatcher hook")

    def react(self, topic: str, *args: Any, template_id: int | None = None) -> None:
        for hook in REACTIONS.get(topic, ()):
            # Logged by call(); a failing reaction never stops the others.
            with contextlib.suppress(HookError):
                self.call(hook, *args, template_id=template_id)

    def reload(self) -> None:
        """systemSoftRestart: the next call starts a fresh worker, which loads
        the hook files and every module they import again."""
        self.close()

    def close(self) -> None:
        self._defined = ((), frozenset())
        self._worker.close()
