"""The template engine: MTemplateAPI files loaded, described and called.

Three processes use it, each for its part:

- the jobs service loads the template files (the built-in library and the
  studio's folder: `load_catalogue`), stores each template's `definition`
  and code version, and checks submissions against the definition;
- the hook worker (muster_gateway/hook_worker.py) calls the templates' dispatcher
  callbacks (onValidateJobSubmission, onJobEnd, ...);
- the render-node agent's template host (muster_agent/template_host.py) loads the
  version an assignment names (`load_source`) and calls the node callbacks:
  `build_command` before the process starts, `check_running_log` while it
  runs, `judge` once it ended; `ProgressParser` reads progress from lines.

Nothing here touches a database or the network.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import shlex
import sys
import threading
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muster_gateway.mtemplate import (
    DISPATCHER_CALLBACKS,
    LOGIC_PACKET_TYPES,
    NODE_CALLBACKS,
    MEnvironment,
    MManager,
    MStringRef,
    MTemplate,
    MTemplateError,
    MTemplateItem,
)

# ProgressParser is in muster_gateway/progress.py: the agent reads progress without the engine.
from muster_gateway.progress import ProgressParser as ProgressParser

_LOG = logging.getLogger(__name__)

PLATFORMS = ("windows", "linux", "macos")
# farm.common.v1.Platform's numbers (MClientAPI.kPlatform*), given to onBuildCommandLine.
PLATFORM_NUMBERS = {"windows": 1, "linux": 2, "macos": 3}

# The built-in library: MTemplateAPI files shipped with the dispatcher.
LIBRARY_DIR = Path(__file__).resolve().parent.parent / "muster_services" / "jobs" / "library"

_load_lock = threading.Lock()
_module_numbers = itertools.count(1)


class TemplateLoadError(Exception):
    """A template file failed to import or to install; `text` has the traceback."""

    def __init__(self, file_path: str, text: str) -> None:
        super().__init__(f"{file_path}: {text.strip().splitlines()[-1] if text.strip() else text}")
        self.file_path = file_path
        self.text = text


class CallbackFailed(Exception):
    """A template callback raised or answered something unusable; the
    message says which callback and carries the traceback."""


def version_of(source: str) -> str:
    """A template file's version: a hash of its text."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def load_source(source: str, file_path: str) -> list[MTemplate]:
    """Run a template file's text and return the templates it installed
    (raises TemplateLoadError with the traceback)."""
    manager = MManager.getUniqueClass()
    name = f"muster_template_{next(_module_numbers)}_{Path(file_path).stem}"
    module = types.ModuleType(name)
    module.__file__ = file_path
    with _load_lock:
        manager.installed = []
        try:
            code = compile(source, file_path, "exec")
            sys.modules[name] = module
            exec(code, module.__dict__)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise TemplateLoadError(file_path, traceback.format_exc()) from None
        finally:
            installed, manager.installed = manager.installed, []
    if not installed:
        raise TemplateLoadError(
            file_path,
            "the file installs no template: call "
            "MTemplateAPI.MManager.getUniqueClass().installPyTemplate(instance)",
        )
    ids = [t.getID() for t in installed]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise TemplateLoadError(file_path, f"the file installs template id {duplicated[0]} twice")
    for template in installed:
        if not template.getName():
            raise TemplateLoadError(
                file_path, f"template {template.getID()}: setName was not called"
            )
    return installed


@dataclass(frozen=True)
class LoadedTemplate:
    template: MTemplate
    file_path: str
    source: str
    version: str
    builtin: bool


@dataclass
class Catalogue:
    """The templates of the library and the studio folder, with the problems
    of the files that could not be used (file path -> error text)."""

    templates: dict[int, LoadedTemplate] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    # Every file read, with the ids it installed (for the files table).
    files: dict[str, list[int]] = field(default_factory=dict)


def template_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_catalogue(library: Path | None, studio: Path | None) -> Catalogue:
    """Load every template file. A studio file may replace a built-in template
    of the same id (said in the log); two studio files installing the same id
    are both refused, each error naming the other file; two templates of one
    name likewise."""
    catalogue = Catalogue()
    studio_templates: dict[int, list[LoadedTemplate]] = {}
    for builtin, folder in ((True, library), (False, studio)):
        for path in template_files(folder):
            try:
                source = path.read_text(encoding="utf-8")
                loaded = load_source(source, str(path))
            except TemplateLoadError as exc:
                catalogue.problems[str(path)] = exc.text
                catalogue.files[str(path)] = []
                _LOG.warning("template file %s failed to load:\n%s", path, exc.text)
                continue
            except OSError as exc:
                catalogue.problems[str(path)] = f"cannot read the file: {exc}"
                catalogue.files[str(path)] = []
                _LOG.warning("template file %s cannot be read: %s", path, exc)
                continue
            catalogue.files[str(path)] = [t.getID() for t in loaded]
            for template in loaded:
                entry = LoadedTemplate(template, str(path), source, version_of(source), builtin)
                if builtin:
                    catalogue.templates[template.getID()] = entry
                else:
                    studio_templates.setdefault(template.getID(), []).append(entry)
    for template_id, entries in studio_templates.items():
        if len(entries) > 1:
            files = [e.file_path for e in entries]
            for entry in entries:
                others = ", ".join(f for f in files if f != entry.file_path)
                _refuse(
                    catalogue,
                    entry,
                    f"template id {template_id} is installed by {entry.file_path} and by "
                    f"{others}: both refused until one id changes",
                )
            continue
        (entry,) = entries
        replaced = catalogue.templates.get(template_id)
        if replaced is not None:
            _LOG.info(
                "template %s of %s replaces the built-in one of %s",
                template_id,
                entry.file_path,
                replaced.file_path,
            )
        catalogue.templates[template_id] = entry
    by_name: dict[str, list[LoadedTemplate]] = {}
    for entry in catalogue.templates.values():
        by_name.setdefault(entry.template.getName().lower(), []).append(entry)
    for entries in by_name.values():
        if len(entries) > 1:
            for entry in entries:
                namesakes = [
                    f"{e.template.getID()} ({e.file_path})" for e in entries if e is not entry
                ]
                _refuse(
                    catalogue,
                    entry,
                    f"template {entry.template.getID()} has the name "
                    f"{entry.template.getName()!r} of template {', '.join(namesakes)}: "
                    "both refused until one name changes",
                )
    return catalogue


def _refuse(catalogue: Catalogue, entry: LoadedTemplate, why: str) -> None:
    _LOG.warning("%s", why)
    catalogue.templates.pop(entry.template.getID(), None)
    previous = catalogue.problems.get(entry.file_path)
    catalogue.problems[entry.file_path] = f"{previous}\n{why}" if previous else why


# --- what a template says about itself ---------------------------------------------------


def definition(template: MTemplate) -> dict[str, Any]:
    """A template's configuration as JSON (stored with it, served by GetTemplate,
    checked at submission)."""
    return {
        "id": template.getID(),
        "name": template.getName(),
        "description": template.getDescription(),
        "logic": template.getTemplateLogic(),
        "packet_type": LOGIC_PACKET_TYPES[template.getTemplateLogic()],
        "default_priority": template.getDefaultPriority(),
        "default_pools": _names(template.getDefaultPools()),
        "default_excluded_pools": _names(template.getDefaultExcludedPools()),
        "default_packet_size": template.getDefaultPacketSize(),
        "licenses_group": template.getLicensesGroup(),
        "max_licenses": template.getMaximumLicenses(),
        "delay_group": template.getDelayGroup(),
        "delay_seconds": template.getDelay(),
        "items": [item.as_json() for item in template.getSubmissionItems()],
        "mappings": template.getMappings(),
        "platforms": [section.as_json() for section in template.platforms()],
        "progress_regexes": template.getProgressRegexes(),
        "frame_done_regexes": template.getFrameDoneRegexes(),
        "dispatcher_callbacks": template.overridden(DISPATCHER_CALLBACKS),
        "node_callbacks": template.overridden(NODE_CALLBACKS),
    }


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def enabled_platforms(template_definition: Mapping[str, Any]) -> list[str]:
    return [p["platform"] for p in template_definition.get("platforms", ()) if p.get("enabled")]


# --- the render node's calls ----------------------------------------------------------------


def preferences(template: MTemplate, platform: str, *values: Mapping[str, str]) -> dict[str, Any]:
    """`clientTemplatePreferences` of a node: the platform's client items'
    defaults, overlaid by each of `values` in turn (the agent's own
    configuration, then the administrator's values), converted to each
    item's kind. Keys no item declares are kept as given (text)."""
    items = {i.name: i for i in template.platform(platform).getClientConfigurationItems()}
    result: dict[str, Any] = {name: item.default for name, item in items.items()}
    for layer in values:
        for key, raw in layer.items():
            item = items.get(key)
            result[key] = _typed(item, raw) if item is not None else str(raw)
    return result


def _typed(item: MTemplateItem, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if item.KIND == "integer":
            return int(float(raw))
        if item.KIND == "double":
            return float(raw)
    except ValueError:
        return raw
    if item.KIND == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw


@dataclass(frozen=True)
class BuiltCommand:
    """A process to start: no shell is involved."""

    executable: str
    arguments: tuple[str, ...]
    working_directory: str
    environment: dict[str, str]


def _call(template: MTemplate, name: str, *args: Any) -> Any:
    try:
        return getattr(template, name)(*args)
    except Exception:
        raise CallbackFailed(
            f"template {template.getID()} {name} raised:\n{traceback.format_exc()}"
        ) from None


def _template_error(template: MTemplate, name: str, answer: Any) -> MTemplateError:
    if answer is None:
        return MTemplateError()
    if isinstance(answer, tuple) and answer:  # (MTemplateError, ...) as some scripts return
        answer = answer[0]
    if isinstance(answer, MTemplateError):
        return answer
    if callable(getattr(answer, "getErrorCode", None)):  # a MUSTERERR
        code = int(answer.getErrorCode())
        return MTemplateError(code, str(answer.getDescription())) if code else MTemplateError()
    raise CallbackFailed(
        f"template {template.getID()} {name} returned {type(answer).__name__}, "
        "not an MTemplateError"
    )


def build_command(
    template: MTemplate,
    platform: str,
    job: Any,
    chunk: Any,
    prefs: Mapping[str, Any],
    instance: int,
    environment: Mapping[str, str],
) -> BuiltCommand:
    """The process that renders `chunk` of `job` on a node of `platform`:
    onGetApplicationPath, onGetApplicationStartingFolder, onBuildCommandLine
    and onBuildEnvironment (which gets `environment`: the job's variables on
    top of nothing else; the agent adds its own environment under them).
    Raises CallbackFailed naming the callback."""
    section = template.platform(platform)
    if not section.isPlatformEnabled():
        raise CallbackFailed(f"template {template.getID()} is not enabled for {platform}")
    path = MStringRef()
    error = _template_error(
        template,
        "onGetApplicationPath",
        _call(template, "onGetApplicationPath", job, prefs, path),
    )
    if error.isError():
        raise CallbackFailed(
            f"template {template.getID()} onGetApplicationPath: {error.getDescription()}"
        )
    executable = path.getString().strip()
    if not executable:
        raise CallbackFailed(
            f"template {template.getID()} onGetApplicationPath gave no path "
            f"(client configuration of this node: {dict(prefs)})"
        )
    folder = MStringRef()
    error = _template_error(
        template,
        "onGetApplicationStartingFolder",
        _call(template, "onGetApplicationStartingFolder", job, prefs, folder),
    )
    if error.isError():
        raise CallbackFailed(
            f"template {template.getID()} onGetApplicationStartingFolder: {error.getDescription()}"
        )
    line = _call(
        template, "onBuildCommandLine", PLATFORM_NUMBERS[platform], job, chunk, prefs, instance
    )
    arguments = _arguments(template, line, platform)
    env = MEnvironment(environment)
    answer = _call(template, "onBuildEnvironment", job, chunk, prefs, env)
    if answer is None:
        answer = env
    if isinstance(answer, MEnvironment):
        built_env = answer.asDict()
    elif isinstance(answer, Mapping):
        built_env = {str(k): str(v) for k, v in answer.items()}
    else:
        raise CallbackFailed(
            f"template {template.getID()} onBuildEnvironment returned "
            f"{type(answer).__name__}, not the environment"
        )
    return BuiltCommand(executable, arguments, folder.getString().strip(), built_env)


def _arguments(template: MTemplate, line: Any, platform: str) -> tuple[str, ...]:
    """onBuildCommandLine's answer as arguments: a str is split as the
    platform's shell would (quotes group words); a list or tuple is taken
    as the arguments themselves (extension)."""
    if isinstance(line, list | tuple):
        return tuple(str(a) for a in line)
    if not isinstance(line, str):
        raise CallbackFailed(
            f"template {template.getID()} onBuildCommandLine returned "
            f"{type(line).__name__}, not a str"
        )
    try:
        return tuple(shlex.split(line, posix=platform != "windows"))
    except ValueError as exc:
        raise CallbackFailed(
            f"template {template.getID()} onBuildCommandLine: cannot split {line!r}: {exc}"
        ) from None


@dataclass(frozen=True)
class Verdict:
    """How a run ended in the template's eyes: outcome "succeeded",
    "warnings" or "failed"; `abort` asks to kill the render now."""

    outcome: str
    message: str
    abort: bool = False


# Job.logs_error_check values (farm.jobs.v1.LogsErrorCheck).
LOGS_CHECK_ALL = 1
LOGS_CHECK_SKIP_WARNINGS = 2
LOGS_CHECK_SKIP_ALL = 3


def check_running_log(
    template: MTemplate, job: Any, chunk: Any, prefs: Mapping[str, Any], text: str
) -> Verdict | None:
    """onCheckLog on the lines that arrived since the last call, while the
    render runs: a Verdict (with abort=True) when the template asks to abort
    the render now (kTemplateErrorAbortRender), else None."""
    error = _template_error(
        template, "onCheckLog", _call(template, "onCheckLog", job, chunk, prefs, text)
    )
    if error.isError() and error.hasErrorAction(MTemplateError.kTemplateErrorAbortRender):
        return Verdict("failed", _described("error in log", error), abort=True)
    return None


def judge(
    template: MTemplate,
    platform: str,
    job: Any,
    chunk: Any,
    prefs: Mapping[str, Any],
    log: str,
    exit_code: int,
    logs_check: int,
) -> Verdict:
    """The outcome of a run whose process exited: onCheckExitCode, then
    onCheckLog on the whole log unless the job skips log checks
    (LOGS_ERROR_CHECK_SKIP_ALL) or the platform section turned error checks
    off; warnings count unless the job skips them."""
    exit_error = _template_error(
        template,
        "onCheckExitCode",
        _call(template, "onCheckExitCode", job, chunk, prefs, exit_code),
    )
    if exit_error.isError():
        return Verdict("failed", _described(f"exit code {exit_code}", exit_error))
    log_error = MTemplateError()
    if logs_check != LOGS_CHECK_SKIP_ALL and template.platform(platform).isErrorCheckEnabled():
        log_error = _template_error(
            template, "onCheckLog", _call(template, "onCheckLog", job, chunk, prefs, log)
        )
    if log_error.isError():
        return Verdict("failed", _described("error in log", log_error))
    if logs_check != LOGS_CHECK_SKIP_WARNINGS:
        for what, error in (("warning in log", log_error), (f"exit code {exit_code}", exit_error)):
            if error.isWarning():
                return Verdict("warnings", _described(what, error))
    return Verdict("succeeded", f"exit code {exit_code}")


def _described(what: str, error: MTemplateError) -> str:
    text = error.getDescription().strip()
    return f"{what}: {text[:500]}" if text and text != what else what


# --- progress --------------------------------------------------------------------------------


def frames_in_chunk(start: float, end: float, step: float) -> int:
    step = step or 1.0
    return max(1, int((end - start) / step + 1e-9) + 1)
