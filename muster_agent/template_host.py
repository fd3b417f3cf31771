"""Where template code runs on a render node (`python -m muster_agent.template_host`).

The agent never runs a template's code itself: a callback that hangs or
crashes takes only this process down, and the agent starts a new one (and
loads the template versions it knows into it again). Requests and answers are
JSON lines (muster_gateway/worker.py); what templates print goes to stderr, which
the agent logs. Inside, `muster.runningContext()` is "renderclient".

Requests ("op"):
- load: a version's source (template_id, version, source, file_name);
- begin: a run (run = the assignment's fencing token; template_id, version,
  platform, job and chunk as base64 protobuf bytes, layers of client
  preferences, instance, environment) -> the command to start, the progress
  and frame-done patterns, the frames of the chunk, whether the template
  checks the log while it runs (onCheckLog);
- check: (run, new log text) -> an abort verdict or none;
- end: (run, whole log, exit code, the job's logs error check) -> the
  verdict; the run is forgotten;
- forget: a run that was killed or timed out;
- message: onCustomMessage(message) of a template, if it defines it.
- expand: a chunk's inline expressions (muster_gateway/expressions.py `request`)
  -> its `answer` (muster_agent/actions.py).
Every request may carry "render_client": the variables that tell MInstanceAPI
about the agent's instances now (muster_gateway/context.py), set before it is handled.
A callback that raises answers {"error", "traceback"}.

`TemplateHost` is the agent's side: one host process per agent instance.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from muster_agent.system import release_free_memory
from muster_gateway.worker import Worker, WorkerError

_LOG = logging.getLogger("muster-agent")

DEFAULT_CALLBACK_SECONDS = 30.0
# Starting Python and importing the engine is not a callback's time.
STARTUP_SECONDS = 30.0
# Requests after which a host with no open run is idle (it trims its memory).
IDLE_AFTER = frozenset({"load", "end", "forget"})


# --- the host process ----------------------------------------------------------------------


@dataclass
class _Run:
    template: Any
    platform: str
    job: Any
    chunk: Any
    prefs: dict[str, Any]


class Host:
    """The state of the host process: loaded template versions and open runs."""

    def __init__(self) -> None:
        # (template id, version) -> the MTemplate instance.
        self.templates: dict[tuple[int, str], Any] = {}
        self.runs: dict[int, _Run] = {}

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        os.environ.update({str(k): str(v) for k, v in request.get("render_client", {}).items()})
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"unknown request {op!r}")
        answer: dict[str, Any] = handler(request)
        return answer

    def _template(self, template_id: int, version: str) -> Any:
        template = self.templates.get((template_id, version))
        if template is None:
            raise LookupError(f"template {template_id} version {version} is not loaded")
        return template

    def op_load(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from muster_gateway.template_engine import load_source

        version = str(request["version"])
        installed = load_source(str(request["source"]), str(request["file_name"]))
        for template in installed:
            self.templates[(template.getID(), version)] = template
        ids = [t.getID() for t in installed]
        if int(request["template_id"]) not in ids:
            raise LookupError(
                f"{request['file_name']} installs templates {ids}, not {request['template_id']}"
            )
        return {"ids": ids}

    def op_begin(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from muster_gateway import template_engine as engine
        from muster_gateway.objects import MChunk, MJob
        from muster_proto.jobs.v1 import jobs_pb2

        template = self._template(int(request["template_id"]), str(request["version"]))
        platform = str(request["platform"])
        job = MJob(jobs_pb2.Job.FromString(base64.b64decode(request["job"])))
        chunk_message = jobs_pb2.Chunk.FromString(base64.b64decode(request["chunk"]))
        chunk = MChunk(chunk_message)
        prefs = engine.preferences(template, platform, *request.get("layers", ()))
        built = engine.build_command(
            template,
            platform,
            job,
            chunk,
            prefs,
            int(request.get("instance", 0)),
            dict(request.get("environment", {})),
        )
        self.runs[int(request["run"])] = _Run(template, platform, job, chunk, prefs)
        return {
            "command": {
                "executable": built.executable,
                "arguments": list(built.arguments),
                "working_directory": built.working_directory,
                "environment": built.environment,
            },
            "progress_regexes": template.getProgressRegexes(),
            "frame_done_regexes": template.getFrameDoneRegexes(),
            "frames": engine.frames_in_chunk(
                chunk_message.start_frame, chunk_message.end_frame, chunk_message.by_frame
            ),
            "checks_log": bool(template.overridden(("onCheckLog",))),
        }

    def op_check(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from muster_gateway import template_engine as engine

        run = self.runs[int(request["run"])]
        verdict = engine.check_running_log(
            run.template, run.job, run.chunk, run.prefs, str(request["text"])
        )
        return {"verdict": _verdict(verdict)}

    def op_end(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from muster_gateway import template_engine as engine

        run = self.runs.pop(int(request["run"]))
        verdict = engine.judge(
            run.template,
            run.platform,
            run.job,
            run.chunk,
            run.prefs,
            str(request["log"]),
            int(request["exit_code"]),
            int(request.get("logs_check", 0)),
        )
        return {"verdict": _verdict(verdict)}

    def op_forget(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.runs.pop(int(request["run"]), None)
        return {}

    def op_expand(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from muster_gateway.expressions import answer

        return answer(request)

    def op_message(self, request: Mapping[str, Any]) -> dict[str, Any]:
        template_id = int(request["template_id"])
        # The newest loaded version of the template answers.
        found = [t for (i, _), t in self.templates.items() if i == template_id]
        if not found or not found[-1].overridden(("onCustomMessage",)):
            return {"handled": False}
        found[-1].onCustomMessage(str(request["message"]))
        return {"handled": True}


def _verdict(verdict: Any) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {"outcome": verdict.outcome, "message": verdict.message, "abort": verdict.abort}


def serve() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # templates' prints must not corrupt the answers
    os.environ["MUSTER_RUNNING_CONTEXT"] = "renderclient"
    host = Host()
    # Imported before the handshake: the first call is timed from the ready line.
    # Not MClientAPI (the same MJob and MChunk classes, with the client library
    # and gRPC: 19 MB of the host's 45): a template that imports it loads it then.
    import muster_gateway.objects
    import muster_gateway.template_engine  # noqa: F401

    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = host.handle(request)
        except Exception as exc:
            text = str(exc)
            answer = {
                "error": text if text.startswith("template ") else f"{type(exc).__name__}: {text}",
                "traceback": text if "Traceback" in text else traceback.format_exc(),
            }
        answer["id"] = request.get("id")
        with contextlib.suppress(BrokenPipeError):
            out.write(json.dumps(answer) + "\n")
            out.flush()
        if request.get("op") in IDLE_AFTER and not host.runs:
            # The host waits for the next chunk now: what it freed goes back.
            release_free_memory()


# --- the agent's side ----------------------------------------------------------------------


class TemplateFailed(Exception):
    """A template callback raised, overran its time or the host died: the
    chunk fails with this text (the traceback) in its log."""


@dataclass(frozen=True)
class Started:
    """What `begin` answers: the process to start and how to read its log."""

    executable: str
    arguments: tuple[str, ...]
    working_directory: str
    environment: dict[str, str]
    progress_regexes: tuple[str, ...]
    frame_done_regexes: tuple[str, ...]
    frames: int
    checks_log: bool


@dataclass(frozen=True)
class Source:
    template_id: int
    version: str
    source: str
    file_name: str


class TemplateHost:
    """The agent's handle on one host process. Calls block (run them in a
    thread); each has the callback time limit; a host that overran or died is
    restarted on the next call with every version loaded so far."""

    def __init__(
        self,
        timeout: float = DEFAULT_CALLBACK_SECONDS,
        environment: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sources: dict[tuple[int, str], Source] = {}
        self._base_environment = environment or (lambda: os.environ)
        # The agent's instances for MInstanceAPI, sent with every request (set
        # by the agent's instance: muster_agent/session.py).
        self.render_client: Callable[[], Mapping[str, str]] = dict
        self._worker = Worker(
            [sys.executable, "-m", "muster_agent.template_host"],
            name="the template host",
            log=_LOG,
            environment=self._environment,
            startup_seconds=lambda: max(STARTUP_SECONDS, self.timeout),
            on_start=self._reload,
        )

    @property
    def starts(self) -> int:
        return self._worker.starts

    def _environment(self) -> dict[str, str]:
        return {**self._base_environment(), "MUSTER_RUNNING_CONTEXT": "renderclient"}

    def _reload(self, worker: Worker) -> None:
        for source in self._sources.values():
            self._send(worker, self._load_request(source))

    def loaded(self, template_id: int, version: str) -> bool:
        return (template_id, version) in self._sources

    def loaded_any(self, template_id: int) -> bool:
        """Whether some version of the template was loaded (custom messages
        go only to templates this node has run: no fetch, no host start)."""
        return any(i == template_id for i, _ in self._sources)

    @staticmethod
    def _load_request(source: Source) -> dict[str, Any]:
        return {
            "op": "load",
            "template_id": source.template_id,
            "version": source.version,
            "source": source.source,
            "file_name": source.file_name,
        }

    def _send(self, worker: Worker, request: dict[str, Any]) -> dict[str, Any]:
        request = {**request, "id": next(self._ids), "render_client": dict(self.render_client())}
        what = request["op"]
        try:
            answer = worker.call(request, self.timeout)
        except WorkerError as exc:
            raise TemplateFailed(f"template callback ({what}): {exc}") from None
        if "error" in answer:
            raise TemplateFailed(str(answer.get("traceback") or answer["error"]))
        return answer

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._send(self._worker, request)

    def load(self, source: Source) -> None:
        """Load a version into the host (kept for a restarted host)."""
        self._sources[(source.template_id, source.version)] = source
        self.call(self._load_request(source))

    def begin(
        self,
        run: int,
        template_id: int,
        version: str,
        platform: str,
        job: bytes,
        chunk: bytes,
        layers: Sequence[Mapping[str, str]],
        instance: int,
        environment: Mapping[str, str],
    ) -> Started:
        answer = self.call(
            {
                "op": "begin",
                "run": run,
                "template_id": template_id,
                "version": version,
                "platform": platform,
                "job": base64.b64encode(job).decode(),
                "chunk": base64.b64encode(chunk).decode(),
                "layers": [dict(layer) for layer in layers],
                "instance": instance,
                "environment": dict(environment),
            }
        )
        command = answer["command"]
        return Started(
            executable=command["executable"],
            arguments=tuple(command["arguments"]),
            working_directory=command["working_directory"],
            environment=dict(command["environment"]),
            progress_regexes=tuple(answer["progress_regexes"]),
            frame_done_regexes=tuple(answer["frame_done_regexes"]),
            frames=int(answer["frames"]),
            checks_log=bool(answer["checks_log"]),
        )

    def check(self, run: int, text: str) -> Verdict | None:
        return _verdict_of(self.call({"op": "check", "run": run, "text": text}).get("verdict"))

    def end(self, run: int, log: str, exit_code: int, logs_check: int) -> Verdict:
        answer = self.call(
            {"op": "end", "run": run, "log": log, "exit_code": exit_code, "logs_check": logs_check}
        )
        verdict = _verdict_of(answer.get("verdict"))
        assert verdict is not None
        return verdict

    def forget(self, run: int) -> None:
        with contextlib.suppress(TemplateFailed):
            self.call({"op": "forget", "run": run})

    def message(self, template_id: int, message: str) -> bool:
        answer = self.call({"op": "message", "template_id": template_id, "message": message})
        return bool(answer.get("handled"))

    def close(self) -> None:
        self._worker.close()


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "succeeded", "warnings" or "failed"
    message: str
    abort: bool = False


def _verdict_of(raw: Any) -> Verdict | None:
    if not raw:
        return None
    return Verdict(str(raw["outcome"]), str(raw["message"]), bool(raw.get("abort")))


def platform_name() -> str:
    """This node's platform as the engine names it."""
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


if __name__ == "__main__":
    serve()


__all__ = ["Source", "Started", "TemplateFailed", "TemplateHost", "Verdict", "serve"]
