"""The process that runs dispatcher hooks (`python -m gateway.hook_worker DIR`).

Hooks run here, not in the service: a hook that hangs or crashes takes only
this process down, and the service starts a new one. Requests and answers are
JSON lines on stdin/stdout; what hooks print goes to stderr (the service logs
it). Inside, `muster.runningContext()` is "dispatcher" and `MDispatcherAPI`
reaches the dispatcher with the dispatcher's own identity.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

CONTEXTS = (
    "onDispatcherOverrideImpersonationUser",
    "onValidateJobSubmission",
    "onDeleteJob",
    "onSubmitJob",
    "onReinitJob",
    "onEditJob",
    "onJobPropertiesChanged",
    "onJobCompleted",
    "onValidateJobDependancies",
    "onValidateChunkDependancies",
    "onJobStart",
    "onJobEnd",
    "onDispatcherIdling",
)


class Hooks:
    """The hook files of a folder, reloaded when one changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stamp: tuple[tuple[str, float], ...] = ()
        self.modules: list[ModuleType] = []

    def _current_stamp(self) -> tuple[tuple[str, float], ...]:
        if not self.folder.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_mtime) for p in self.folder.glob("*.py")))

    def load(self) -> None:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        modules = []
        for name, _ in stamp:
            path = self.folder / name
            spec = importlib.util.spec_from_file_location(f"muster_hooks.{path.stem}", path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception:
                print(
                    f"hook file {name} failed to load:\n{traceback.format_exc()}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            modules.append(module)
        self.modules, self._stamp = modules, stamp

    def defined(self) -> list[str]:
        """The execution-context functions some hook file defines."""
        self.load()
        return [c for c in CONTEXTS if any(callable(getattr(m, c, None)) for m in self.modules)]

    def functions(self, context: str, template_id: int | None) -> list[Any]:
        self.load()
        found = []
        for module in self.modules:
            function = getattr(module, context, None)
            if not callable(function):
                continue
            templates = getattr(module, "TEMPLATES", None)
            if templates and template_id is not None and template_id not in templates:
                continue
            found.append(function)
        return found


def _argument(value: Any) -> Any:
    """Rebuild MClientAPI objects sent as {"MJob": base64 Job bytes}."""
    import MClientAPI

    from farm.jobs.v1 import jobs_pb2

    if isinstance(value, dict) and len(value) == 1:
        ((kind, raw),) = value.items()
        if kind == "MJob":
            return MClientAPI.MJob(jobs_pb2.Job.FromString(base64.b64decode(raw)))
        if kind == "MChunk":
            return MClientAPI.MChunk(jobs_pb2.Chunk.FromString(base64.b64decode(raw)))
    return value


def verdict(result: Any) -> dict[str, Any]:
    """What a hook's return value means.

    None, True or a MUSTERERR/MTemplateError with code 0: accepted. False: refused.
    A MUSTERERR with a non-zero code: refused with its description. A string
    (from onDispatcherOverrideImpersonationUser): that value.
    """
    if result is None or result is True:
        return {"accept": True}
    if result is False:
        return {"accept": False, "reason": "refused by a dispatcher hook"}
    if isinstance(result, tuple) and result:
        result = result[0]
    code = getattr(result, "getErrorCode", None)
    if callable(code):
        if code() == 0:
            return {"accept": True}
        description = getattr(result, "getDescription", lambda: "")()
        return {"accept": False, "reason": description or "refused by a dispatcher hook"}
    if isinstance(result, str):
        return {"accept": True, "value": result}
    return {"accept": True}


def serve(folder: Path) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # hooks' prints must not corrupt the answers
    hooks = Hooks(folder)
    hooks.load()
    # Started and loaded: the service times each hook call from here, not
    # from the interpreter's start (HookRunner.STARTUP_SECONDS).
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {"id": request["id"], "accept": True, "ran": 0}
        try:
            if request["hook"] == "__defined__":
                answer["value"] = hooks.defined()
            else:
                args = [_argument(a) for a in request.get("args", [])]
                for function in hooks.functions(request["hook"], request.get("template_id")):
                    answer["ran"] += 1
                    result = verdict(function(*args))
                    if "value" in result:
                        answer["value"] = result["value"]
                    if not result["accept"]:
                        answer.update(result)
                        break
        except Exception as exc:
            answer.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        with contextlib.suppress(BrokenPipeError):
            out.write(json.dumps(answer) + "\n")
            out.flush()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
