"""The process that runs dispatcher hooks
(`python -m muster_gateway.hook_worker HOOKS_DIR [TEMPLATES_DIR]`).

Hooks run here, not in the service: a hook that hangs or crashes takes only
this process down, and the service starts a new one. Requests and answers are
JSON lines on stdin/stdout; what hooks print goes to stderr (the service logs
it). Inside, `muster.runningContext()` is "dispatcher" and `MDispatcherAPI`
reaches the dispatcher with the dispatcher's own identity.

A hook is a function of a hook file, or the method of the same name of an
MTemplateAPI template (the built-in library and the studio's templates
folder): as in Muster, a template's dispatcher callbacks see the jobs of that
template only, and onDispatcherIdling runs for every template defining it.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import logging
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from muster_gateway.mtemplate import DISPATCHER_CALLBACKS, MTemplate, MTemplateError
from muster_gateway.template_engine import LIBRARY_DIR, load_catalogue
from muster_gateway.worker import LogLineFormatter

_LOG = logging.getLogger("muster_gateway.hook_worker")

# The execution contexts: functions of hook files, methods of templates.
CONTEXTS = DISPATCHER_CALLBACKS


Stamp = tuple[tuple[str, float], ...]


def _files_stamp(folder: Path | None, prefix: str) -> Stamp:
    """The *.py files of a folder with their modification times."""
    if folder is None or not folder.is_dir():
        return ()
    stamps = []
    for path in folder.glob("*.py"):
        with contextlib.suppress(OSError):
            stamps.append((prefix + path.name, path.stat().st_mtime))
    return tuple(sorted(stamps))


class Hooks:
    """The hook files of a folder and the templates of the library and the
    studio's templates folder, reloaded when a file changes."""

    def __init__(self, folder: Path, templates_folder: Path | None = None) -> None:
        self.folder = folder
        self.templates_folder = templates_folder
        self._stamp: Stamp = ()
        self._templates_stamp: Stamp = ()
        self.modules: list[ModuleType] = []
        self.templates: dict[int, MTemplate] = {}

    def _current_stamp(self) -> Stamp:
        return _files_stamp(self.folder, "")

    def _current_templates_stamp(self) -> Stamp:
        if self.templates_folder is None:
            return ()
        return _files_stamp(LIBRARY_DIR, "library/") + _files_stamp(
            self.templates_folder, "studio/"
        )

    def load(self) -> None:
        self._load_templates()
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
                _LOG.warning("hook file %s failed to load", name, exc_info=True)
                continue
            modules.append(module)
        self.modules, self._stamp = modules, stamp

    def _load_templates(self) -> None:
        """The templates' classes, as their files are now (a file that fails
        to load is logged by the engine; the other templates keep working)."""
        stamp = self._current_templates_stamp()
        if stamp == self._templates_stamp:
            return
        catalogue = load_catalogue(LIBRARY_DIR, self.templates_folder)
        self.templates = {i: entry.template for i, entry in catalogue.templates.items()}
        self._templates_stamp = stamp

    def defined(self) -> list[str]:
        """The execution contexts some hook file or template defines."""
        self.load()
        return [
            c
            for c in CONTEXTS
            if any(callable(getattr(m, c, None)) for m in self.modules)
            or any(t.overridden((c,)) for t in self.templates.values())
        ]

    def functions(self, context: str, template_id: int | None) -> list[Any]:
        """The hook files' functions for `context`, then the method of the
        job's template when its class defines it (without a template id, as
        for onDispatcherIdling, the method of every template defining it)."""
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
        if template_id is None:
            owners = [self.templates[i] for i in sorted(self.templates)]
        else:
            owner = self.templates.get(template_id)
            owners = [owner] if owner is not None else []
        found.extend(getattr(t, context) for t in owners if t.overridden((context,)))
        return found


def _argument(value: Any) -> Any:
    """Rebuild MClientAPI objects sent as {"MJob": base64 Job bytes}."""
    import MClientAPI

    from muster_proto.jobs.v1 import jobs_pb2

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
    A MUSTERERR or MTemplateError with a non-zero code: refused with its
    description, unless the MTemplateError is a warning (logged, accepted). A
    string (from onDispatcherOverrideImpersonationUser): that value.
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
        if isinstance(result, MTemplateError) and not result.isError():
            print(f"template callback warning: {description}", file=sys.stderr, flush=True)
            return {"accept": True}
        return {"accept": False, "reason": description or "refused by a dispatcher hook"}
    if isinstance(result, str):
        return {"accept": True, "value": result}
    return {"accept": True}


def serve(folder: Path, templates_folder: Path | None = None) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # hooks' prints must not corrupt the answers
    # Warnings (a hook or template file that fails to load, with its
    # traceback) reach the service's log at their level through stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogLineFormatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    hooks = Hooks(folder, templates_folder)
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
    serve(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
