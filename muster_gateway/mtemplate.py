"""Muster's template scripting API (`MTemplateAPI`): the classes a template file uses.

A template file defines a subclass of `MTemplate`, configures it in
`__init__` (id, name, logic, submission items, mappings, platform sections,
licence and delay groups) and registers an instance with
`MManager.getUniqueClass().installPyTemplate(instance)`. The engine
(muster_gateway/template_engine.py) runs such files and calls the callbacks.

Every value this project picked for a constant Muster does not document is
here, once (docs/templates.md repeats the table):

- template logic: kTemplateMultiframe 1, kTemplateImageSlicing 2,
  kTemplateSingleHost 3, kTemplateBroadcast 4 (the job packet types of the
  same numbers, so `MJob.setPacketType(MTemplateAPI.kTemplateMultiframe)`
  works);
- process detection: kProcessDirect 0, kProcessChildren 1;
- MTemplateError types: kTemplateErrorTypeNone 0, kTemplateErrorTypeWarning 1,
  kTemplateErrorTypeError 2; action kTemplateErrorAbortRender 1;
- the three int flags of the items: f1 reserved (kept, unused), f2 required,
  f3 enabled (a disabled item is not checked and gets no default).

Names marked "extension" are this project's own, for what Muster leaves
unknown (progress lines, frame-done lines, log pattern checks).
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

kTemplateMultiframe = 1
kTemplateImageSlicing = 2
kTemplateSingleHost = 3
kTemplateBroadcast = 4

LOGIC_PACKET_TYPES = {
    kTemplateMultiframe: "frames",
    kTemplateImageSlicing: "slices",
    kTemplateSingleHost: "single",
    kTemplateBroadcast: "broadcast",
}

kProcessDirect = 0
kProcessChildren = 1

DETECTION_LOGICS = (kProcessDirect, kProcessChildren)


class TemplateDefinitionError(ValueError):
    """A template configured itself with a value the engine cannot take."""


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TemplateDefinitionError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _count(value: Any, what: str, zero: str) -> int:
    """A whole number that is 0 (`zero` says what 0 means) or more."""
    number = _integer(value, what)
    if number < 0:
        raise TemplateDefinitionError(f"{what}: {zero} or more, not {number}")
    return number


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise TemplateDefinitionError(f"{what} must be an int, not {value!r}")
    return int(value)


# --- errors -------------------------------------------------------------------------------


class MTemplateError:
    """The result of a check callback. `MTemplateError()` means no error."""

    kTemplateErrorTypeNone = 0
    kTemplateErrorTypeWarning = 1
    kTemplateErrorTypeError = 2

    kTemplateErrorAbortRender = 1

    ACTIONS = (kTemplateErrorAbortRender,)

    def __init__(self, code: int = 0, description: str = "", errorType: int | None = None) -> None:
        self._code = int(code)
        self._description = str(description)
        if errorType is None:
            errorType = self.kTemplateErrorTypeError if self._code else self.kTemplateErrorTypeNone
        if errorType not in (
            self.kTemplateErrorTypeNone,
            self.kTemplateErrorTypeWarning,
            self.kTemplateErrorTypeError,
        ):
            raise TemplateDefinitionError(f"MTemplateError: unknown error type {errorType!r}")
        self._type = int(errorType)
        self._actions: list[int] = []

    def addErrorAction(self, action: int) -> None:
        if action not in self.ACTIONS:
            raise TemplateDefinitionError(
                f"MTemplateError.addErrorAction: unknown action {action!r}"
            )
        if action not in self._actions:
            self._actions.append(action)

    def getErrorActions(self) -> list[int]:
        return list(self._actions)

    def hasErrorAction(self, action: int) -> bool:
        return action in self._actions

    def getErrorCode(self) -> int:
        return self._code

    def getDescription(self) -> str:
        return self._description

    def getType(self) -> int:
        return self._type

    getErrorType = getType

    def isError(self) -> bool:
        return self._type == self.kTemplateErrorTypeError

    def isWarning(self) -> bool:
        return self._type == self.kTemplateErrorTypeWarning

    def isOk(self) -> bool:
        return self._type == self.kTemplateErrorTypeNone

    def __repr__(self) -> str:
        kind = {0: "none", 1: "warning", 2: "error"}[self._type]
        return f"MTemplateError({self._code}, {self._description!r}, {kind})"


# --- references and the environment ----------------------------------------------------------


class MStringRef:
    """A string written by a callback (`pathOut.setString(...)`)."""

    def __init__(self, value: str = "") -> None:
        self._value = str(value)

    def setString(self, value: str) -> None:
        self._value = str(value)

    def getString(self) -> str:
        return self._value

    def __str__(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"MStringRef({self._value!r})"


class MEnvironment:
    """The environment of the render process, as `onBuildEnvironment` gets and
    returns it: `setValue(key, value)` and friends, and dict-style access."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = {str(k): str(v) for k, v in (values or {}).items()}

    def setValue(self, key: str, value: Any) -> None:
        self._values[str(key)] = str(value)

    def getValue(self, key: str) -> str:
        return self._values.get(str(key), "")

    def hasValue(self, key: str) -> bool:
        return str(key) in self._values

    def removeValue(self, key: str) -> None:
        self._values.pop(str(key), None)

    def appendValue(self, key: str, value: Any, separator: str = ":") -> None:
        """Extension: add to a list variable (PATH-like), keeping what is there."""
        current = self._values.get(str(key), "")
        self._values[str(key)] = f"{current}{separator}{value}" if current else str(value)

    def prependValue(self, key: str, value: Any, separator: str = ":") -> None:
        """Extension: put a value in front of a list variable (PATH-like)."""
        current = self._values.get(str(key), "")
        self._values[str(key)] = f"{value}{separator}{current}" if current else str(value)

    def getKeys(self) -> list[str]:
        return list(self._values)

    def asDict(self) -> dict[str, str]:
        return dict(self._values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.setValue(key, value)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


# --- submission items ----------------------------------------------------------------------


class MTemplateItem:
    """A submission field (or a client configuration item of a platform).

    `(name, label, description, default, f1, f2, f3)`: f2 = required, f3 =
    enabled; f1 is kept and not used (module docstring)."""

    KIND = "string"

    def __init__(
        self,
        name: str,
        label: str = "",
        description: str = "",
        default: Any = None,
        f1: int = 0,
        f2: int = 0,
        f3: int = 1,
    ) -> None:
        self.name = _text(name, f"{type(self).__name__} name")
        if not self.name:
            raise TemplateDefinitionError(f"{type(self).__name__}: the name is empty")
        self.label = _text(label or self.name, f"{self.name}: label")
        self.description = _text(description, f"{self.name}: description")
        self.default = self._default(default)
        self.flags = (int(f1), int(f2), int(f3))

    def _default(self, value: Any) -> Any:
        return "" if value is None else _text(value, f"{self.name}: default")

    @property
    def required(self) -> bool:
        return bool(self.flags[1])

    @property
    def enabled(self) -> bool:
        return bool(self.flags[2])

    def getName(self) -> str:
        return self.name

    def getLabel(self) -> str:
        return self.label

    def getDescription(self) -> str:
        return self.description

    def getDefault(self) -> Any:
        return self.default

    getDefaultValue = getDefault

    def isRequired(self) -> bool:
        return self.required

    def isEnabled(self) -> bool:
        return self.enabled

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.KIND,
            "label": self.label,
            "description": self.description,
            "default": self.default,
            "flags": list(self.flags),
            "required": self.required,
            "enabled": self.enabled,
            "options": list(getattr(self, "options", ())),
            "filter": getattr(self, "filter", ""),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, default={self.default!r})"


class MTemplateItemString(MTemplateItem):
    KIND = "string"


class MTemplateItemFile(MTemplateItem):
    """A file path; `filter` is the file dialog's filter (`"*.mb;*.ma"`).
    Path items go through the repositories' path substitution."""

    KIND = "file"

    def __init__(
        self,
        name: str,
        label: str = "",
        description: str = "",
        default: Any = None,
        f1: int = 0,
        f2: int = 0,
        f3: int = 1,
        filter: str = "*.*",
    ) -> None:
        super().__init__(name, label, description, default, f1, f2, f3)
        self.filter = _text(filter, f"{self.name}: filter")


class MTemplateItemFolder(MTemplateItem):
    KIND = "folder"


class MTemplateItemInteger(MTemplateItem):
    KIND = "integer"

    def _default(self, value: Any) -> Any:
        return 0 if value is None else _integer(value, f"{self.name}: default")


class MTemplateItemDouble(MTemplateItem):
    """Extension name (Muster's float item is not documented by name)."""

    KIND = "double"

    def _default(self, value: Any) -> Any:
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TemplateDefinitionError(f"{self.name}: default must be a number, not {value!r}")
        return float(value)


MTemplateItemFloat = MTemplateItemDouble


class MTemplateItemYesNo(MTemplateItem):
    """Extension name: a yes/no field (Muster's `ABORTRENDER`-style items)."""

    KIND = "bool"

    def _default(self, value: Any) -> Any:
        if value is None:
            return False
        if not isinstance(value, bool | int):
            raise TemplateDefinitionError(f"{self.name}: default must be a bool, not {value!r}")
        return bool(value)


MTemplateItemBool = MTemplateItemYesNo


class MTemplateItemCombo(MTemplateItem):
    """Extension name: one of fixed `options` (strings)."""

    KIND = "combo"

    def __init__(
        self,
        name: str,
        label: str = "",
        description: str = "",
        default: Any = None,
        f1: int = 0,
        f2: int = 0,
        f3: int = 1,
        options: Iterable[str] = (),
    ) -> None:
        self.options = tuple(_text(o, f"{name}: option") for o in options)
        super().__init__(name, label, description, default, f1, f2, f3)
        if self.options and self.default not in self.options:
            raise TemplateDefinitionError(
                f"{self.name}: default {self.default!r} is not one of {list(self.options)}"
            )


ITEM_KINDS: dict[str, type[MTemplateItem]] = {
    cls.KIND: cls
    for cls in (
        MTemplateItemString,
        MTemplateItemFile,
        MTemplateItemFolder,
        MTemplateItemInteger,
        MTemplateItemDouble,
        MTemplateItemYesNo,
        MTemplateItemCombo,
    )
}


# --- platform sections -------------------------------------------------------------------


class MTemplatePlatform:
    """One operating system's section of a template (`platformLinux`...)."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.enabled = False
        self.enabled_by_default = True
        self.error_check = True
        self.frames_floating = 0
        self.detection_logic = kProcessDirect
        self.client_items: list[MTemplateItem] = []

    def setPlatformEnabled(self, enabled: Any) -> None:
        self.enabled = bool(enabled)

    def isPlatformEnabled(self) -> bool:
        return self.enabled

    def setEnabledByDefault(self, enabled: Any) -> None:
        self.enabled_by_default = bool(enabled)

    def isEnabledByDefault(self) -> bool:
        return self.enabled_by_default

    def setEnableErrorCheck(self, enabled: Any) -> None:
        self.error_check = bool(enabled)

    def isErrorCheckEnabled(self) -> bool:
        return self.error_check

    def setFramesFloating(self, digits: Any) -> None:
        self.frames_floating = _integer(digits, f"{self.platform}: frames floating")

    def getFramesFloating(self) -> int:
        return self.frames_floating

    def setDetectionLogic(self, logic: Any) -> None:
        if logic not in DETECTION_LOGICS:
            raise TemplateDefinitionError(f"{self.platform}: unknown detection logic {logic!r}")
        self.detection_logic = int(logic)

    def getDetectionLogic(self) -> int:
        return self.detection_logic

    def addClientConfigurationItem(self, item: MTemplateItem) -> None:
        if not isinstance(item, MTemplateItem):
            raise TemplateDefinitionError(
                f"{self.platform}: addClientConfigurationItem takes an MTemplateItem*, "
                f"not {type(item).__name__}"
            )
        self.client_items = [i for i in self.client_items if i.name != item.name] + [item]

    def getClientConfigurationItems(self) -> list[MTemplateItem]:
        return list(self.client_items)

    def client_defaults(self) -> dict[str, Any]:
        return {item.name: item.default for item in self.client_items}

    def as_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "enabled": self.enabled,
            "enabled_by_default": self.enabled_by_default,
            "error_check": self.error_check,
            "frames_floating": self.frames_floating,
            "detection_logic": self.detection_logic,
            "client_items": [item.as_json() for item in self.client_items],
        }


# --- the template -------------------------------------------------------------------------

# Callbacks the dispatcher calls (the seed's execution contexts) and those the
# render node calls. A template class overrides the ones it needs.
DISPATCHER_CALLBACKS = (
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
NODE_CALLBACKS = (
    "onGetApplicationPath",
    "onGetApplicationStartingFolder",
    "onBuildCommandLine",
    "onBuildEnvironment",
    "onCheckLog",
    "onCheckExitCode",
    "onClientIdling",
    "onCustomMessage",
)


class MTemplate:
    """Base class of a template. Subclasses call `MTemplate.__init__(self)`
    first, then configure themselves."""

    def __init__(self) -> None:
        self._id = 0
        self._name = ""
        self._description = ""
        self._logic = kTemplateMultiframe
        self._default_priority = 1
        self._default_pools = ""
        self._default_excluded_pools = ""
        self._default_packet_size = 0
        self._max_licenses = 0
        self._licenses_group = ""
        self._delay_group = ""
        self._delay = 0
        self._items: list[MTemplateItem] = []
        self._mappings: dict[str, str] = {}
        self._progress: list[str] = []
        self._frame_done: list[str] = []
        self.platformWindows = MTemplatePlatform("windows")
        self.platformLinux = MTemplatePlatform("linux")
        self.platformMac = MTemplatePlatform("macos")

    # identity
    def setID(self, template_id: Any) -> None:
        value = _integer(template_id, "setID")
        if value <= 0:
            raise TemplateDefinitionError(f"setID: a template id is positive, not {value}")
        self._id = value

    def getID(self) -> int:
        return self._id

    def setName(self, name: Any) -> None:
        self._name = _text(name, "setName")

    def getName(self) -> str:
        return self._name

    def setDescription(self, text: Any) -> None:
        self._description = _text(text, "setDescription")

    def getDescription(self) -> str:
        return self._description

    # job defaults
    def setTemplateLogic(self, logic: Any) -> None:
        if logic not in LOGIC_PACKET_TYPES:
            raise TemplateDefinitionError(f"setTemplateLogic: unknown template logic {logic!r}")
        self._logic = int(logic)

    def getTemplateLogic(self) -> int:
        return self._logic

    def setDefaultPriority(self, priority: Any) -> None:
        self._default_priority = _integer(priority, "setDefaultPriority")

    def getDefaultPriority(self) -> int:
        return self._default_priority

    def setDefaultPools(self, pools: Any) -> None:
        self._default_pools = _text(pools, "setDefaultPools")

    def getDefaultPools(self) -> str:
        return self._default_pools

    def setDefaultExcludedPools(self, pools: Any) -> None:
        self._default_excluded_pools = _text(pools, "setDefaultExcludedPools")

    def getDefaultExcludedPools(self) -> str:
        return self._default_excluded_pools

    def setDefaultPacketSize(self, size: Any) -> None:
        """Extension: the packet size a job of this template gets by default."""
        self._default_packet_size = _count(size, "setDefaultPacketSize", "0 (the job's own)")

    def getDefaultPacketSize(self) -> int:
        return self._default_packet_size

    # licences and delays
    def setMaximumLicenses(self, count: Any) -> None:
        self._max_licenses = _count(count, "setMaximumLicenses", "0 (no cap)")

    def getMaximumLicenses(self) -> int:
        return self._max_licenses

    def setLicensesGroup(self, name: Any) -> None:
        self._licenses_group = _text(name, "setLicensesGroup")

    def getLicensesGroup(self) -> str:
        return self._licenses_group

    def setDelayGroup(self, name: Any) -> None:
        self._delay_group = _text(name, "setDelayGroup")

    def getDelayGroup(self) -> str:
        return self._delay_group

    def setDelay(self, seconds: Any) -> None:
        self._delay = _count(seconds, "setDelay", "0 (no delay)")

    def getDelay(self) -> int:
        return self._delay

    # submission items and mappings
    def addSubmissionItem(self, item: MTemplateItem) -> None:
        if not isinstance(item, MTemplateItem):
            raise TemplateDefinitionError(
                f"addSubmissionItem takes an MTemplateItem*, not {type(item).__name__}"
            )
        self._items = [i for i in self._items if i.name != item.name] + [item]

    def getSubmissionItems(self) -> list[MTemplateItem]:
        return list(self._items)

    def getSubmissionItem(self, name: str) -> MTemplateItem | None:
        return next((i for i in self._items if i.name == name), None)

    def addMapping(self, item_name: Any, attribute_name: Any) -> None:
        self._mappings[_text(item_name, "addMapping item")] = _text(
            attribute_name, "addMapping attribute"
        )

    def getMappings(self) -> dict[str, str]:
        return dict(self._mappings)

    def resolveMapping(self, item_name: str) -> str:
        """The job attribute an item's value goes to: its mapping, else its name."""
        return self._mappings.get(item_name, item_name)

    # progress (extension)
    def addProgressRegex(self, pattern: str) -> None:
        """Extension: a log line matching `pattern` gives progress: one group
        is a percent (of the current frame when frame-done lines are declared,
        else of the chunk); two groups are "done of total"; a group named
        `frame` is how many of the chunk's frames are done (ffmpeg's
        `frame=  24`)."""
        re.compile(_text(pattern, "addProgressRegex"))
        self._progress.append(pattern)

    def getProgressRegexes(self) -> list[str]:
        return list(self._progress)

    def addFrameDoneRegex(self, pattern: str) -> None:
        """Extension: a log line matching `pattern` means one more frame of the
        chunk is done (the chunk's progress counts frames)."""
        re.compile(_text(pattern, "addFrameDoneRegex"))
        self._frame_done.append(pattern)

    def getFrameDoneRegexes(self) -> list[str]:
        return list(self._frame_done)

    # platforms
    def platform(self, name: str) -> MTemplatePlatform:
        """The section of a platform name ("windows", "linux", "macos")."""
        sections = {
            "windows": self.platformWindows,
            "linux": self.platformLinux,
            "macos": self.platformMac,
        }
        if name not in sections:
            raise TemplateDefinitionError(f"unknown platform {name!r}")
        return sections[name]

    def platforms(self) -> list[MTemplatePlatform]:
        return [self.platformWindows, self.platformLinux, self.platformMac]

    def overridden(self, names: Iterable[str]) -> list[str]:
        """Which of these callbacks this template's class defines itself."""
        return [
            n
            for n in names
            if callable(getattr(type(self), n, None))
            and getattr(type(self), n) is not getattr(MTemplate, n, None)
        ]

    # Node callbacks: the defaults Muster's base class would answer.
    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: MStringRef
    ) -> MTemplateError:
        return MTemplateError(
            1, f"template {self._id} does not say where its application is (onGetApplicationPath)"
        )

    def onGetApplicationStartingFolder(
        self, job: Any, clientTemplatePreferences: Any, pathOut: MStringRef
    ) -> MTemplateError:
        return MTemplateError()

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> Any:
        return ""

    def onBuildEnvironment(
        self,
        job: Any,
        chunk: Any,
        clientTemplatePreferences: Any,
        existingEnvironment: MEnvironment,
    ) -> MEnvironment:
        return existingEnvironment

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateError:
        return MTemplateError()

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateError:
        if exitCode != 0:
            return MTemplateError(
                exitCode, f"exit code {exitCode}", MTemplateError.kTemplateErrorTypeError
            )
        return MTemplateError()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._id} {self._name!r}>"


# --- the manager ----------------------------------------------------------------------------


class MManager:
    """The template manager singleton: `MManager.getUniqueClass()`."""

    _unique: MManager | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self._templates: dict[int, MTemplate] = {}
        # What the file being loaded installs (the engine reads it after).
        self.installed: list[MTemplate] = []

    @classmethod
    def getUniqueClass(cls) -> MManager:
        with cls._guard:
            if cls._unique is None:
                cls._unique = MManager()
            return cls._unique

    def installPyTemplate(self, template: Any) -> None:
        if isinstance(template, type) and issubclass(template, MTemplate):
            template = template()
        if not isinstance(template, MTemplate):
            raise TemplateDefinitionError(
                "installPyTemplate takes an MTemplate instance (or class), "
                f"not {type(template).__name__}"
            )
        if template.getID() <= 0:
            raise TemplateDefinitionError(f"{type(template).__name__}: setID was not called")
        self.installed.append(template)
        self._templates[template.getID()] = template

    def register(self, template: MTemplate) -> None:
        """The engine's: make a loaded template known to resolveMappingToJob."""
        self._templates[template.getID()] = template

    def forget(self, template_id: int) -> None:
        self._templates.pop(template_id, None)

    def getTemplate(self, template_id: int) -> MTemplate | None:
        return self._templates.get(int(template_id))

    def getTemplates(self) -> list[MTemplate]:
        return list(self._templates.values())

    def resolveMappingToJob(self, template_id: int, item_name: str) -> str:
        template = self._templates.get(int(template_id))
        return template.resolveMapping(item_name) if template is not None else item_name


# --- extension helpers for templates ---------------------------------------------------------


def checkLogPatterns(
    log: str,
    errors: Iterable[str] = (),
    warnings: Iterable[str] = (),
    abort: Iterable[str] = (),
    code: int = 1,
) -> MTemplateError:
    """Extension: the first log line matching `abort` (an error that also
    aborts the render), then `errors`, then `warnings` (regular expressions,
    searched per line, multiline); none: no error."""
    for patterns, kind, stop in (
        (abort, MTemplateError.kTemplateErrorTypeError, True),
        (errors, MTemplateError.kTemplateErrorTypeError, False),
        (warnings, MTemplateError.kTemplateErrorTypeWarning, False),
    ):
        for pattern in patterns:
            found = re.search(pattern, log, re.MULTILINE)
            if found is None:
                continue
            start = log.rfind("\n", 0, found.start()) + 1
            end = log.find("\n", found.end())
            line = log[start : end if end >= 0 else len(log)].strip()
            error = MTemplateError(code, line[:500], kind)
            if stop:
                error.addErrorAction(MTemplateError.kTemplateErrorAbortRender)
            return error
    return MTemplateError()


def exitCodeError(exit_code: int, success: Iterable[int] = (0,), what: str = "") -> MTemplateError:
    """Extension: an Error-type result unless `exit_code` is one of `success`."""
    if exit_code in tuple(success):
        return MTemplateError()
    text = f"exit code {exit_code}" + (f": {what}" if what else "")
    return MTemplateError(exit_code or 1, text, MTemplateError.kTemplateErrorTypeError)


# --- extension helpers for the built-in library ---------------------------------------------
#
# Frame tokens of the command-line template (the token grammar the old
# muster_services/jobs/templates.py used), frame formatting and frame patterns in
# file names. Everything here takes the MClientAPI objects a callback gets
# (`MJob`, `MChunk`).

_TOKEN = re.compile(r"\{\{|\}\}|\{([@*]?)([A-Za-z_][A-Za-z0-9_]*)(?::(\d{1,2}))?\}")
_SPLAT = re.compile(r"\{\*([A-Za-z_][A-Za-z0-9_]*)\}")
_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%0?(\d*)d")


def formatFrame(value: float, padding: int = 0) -> str:
    """Extension: a frame number as a command line wants it: whole frames
    without '.0' (`12.0` -> `"12"`, padded `"0012"`), others as they are."""
    if float(value).is_integer():
        whole = int(value)
        return f"{whole:0{padding}d}" if padding else str(whole)
    return repr(float(value))


def chunkFrames(chunk: Any) -> list[float]:
    """Extension: the frames of a chunk, start to end by its step."""
    start, end = float(chunk.getStartFrame()), float(chunk.getEndFrame())
    step = float(chunk.getByFrame() or 1.0)
    count = max(1, int((end - start) / step + 1e-9) + 1)
    return [start + i * step for i in range(count)]


def singleFrame(chunk: Any, application: str) -> float:
    """Extension: the frame of a one-frame chunk, for renderers that render
    one scene file per process (kick, redshiftCmdLine, prman); a chunk of
    more frames raises ValueError saying to submit with packet size 1."""
    frames = chunkFrames(chunk)
    if len(frames) != 1:
        raise ValueError(
            f"{application} renders one scene file per process: this chunk has "
            f"{len(frames)} frames ({formatFrame(frames[0])}-{formatFrame(frames[-1])}); "
            "submit the job with packet size 1"
        )
    return frames[0]


def framePath(pattern: str, frame: float) -> str:
    """Extension: a file name pattern with its frame put in: a run of `#`
    becomes the frame padded to that many digits, `%04d` likewise; a
    pattern without either is returned unchanged."""
    if "#" in pattern:
        return _HASHES.sub(lambda m: formatFrame(frame, len(m.group(0))), pattern)
    return _PRINTF.sub(lambda m: formatFrame(frame, int(m.group(1) or 0)), pattern)


def hasFramePattern(pattern: str) -> bool:
    """Extension: whether `framePath` would put a frame into `pattern`."""
    return "#" in pattern or _PRINTF.search(pattern) is not None


def _attribute_texts(job: Any) -> dict[str, str]:
    values: dict[str, str] = {}
    message = getattr(job, "message", None)
    if message is None or not hasattr(message, "attributes"):
        return {name: job.attributeGetString(name) for name in job.attributeList()}
    for attribute in message.attributes:
        kind = attribute.WhichOneof("value")
        value = getattr(attribute, kind) if kind else ""
        if isinstance(value, bool):
            values[attribute.name] = "1" if value else "0"
        elif isinstance(value, float):
            values[attribute.name] = formatFrame(value)
        else:
            values[attribute.name] = str(value)
    return values


class _Tokens:
    """The token values of one chunk of one job."""

    def __init__(self, job: Any, chunk: Any) -> None:
        self.attributes = _attribute_texts(job)
        self.frames: dict[str, float] = {}
        self.plain = {"job": str(int(job.getId()))}
        if chunk is not None:
            self.frames = {
                "start": float(chunk.getStartFrame()),
                "end": float(chunk.getEndFrame()),
                "frame": float(chunk.getStartFrame()),
            }
            self.plain.update(
                step=formatFrame(float(chunk.getByFrame() or 1.0)),
                slice=str(int(chunk.getSliceIndex())),
                chunk=str(int(chunk.getId())),
            )

    def expand(self, text: str, attributes: bool = True) -> str:
        def one(match: re.Match[str]) -> str:
            whole, sigil, name, padding = match.group(0), match[1], match[2], match[3]
            if whole in ("{{", "}}"):
                return whole[0]
            if sigil:
                # An attribute's own frame tokens expand too (one level: an
                # attribute never pulls in another one).
                if not attributes:
                    return whole
                return self.expand(self.attributes.get(name, ""), attributes=False)
            if name in self.frames:
                return formatFrame(self.frames[name], int(padding or 0))
            if name in self.plain and padding is None:
                return self.plain[name]
            if name in ("start", "end", "frame", "step", "slice", "chunk"):
                raise ValueError(f"token {whole} needs a chunk, and there is none here")
            raise ValueError(f"unknown token {whole}")

        return _TOKEN.sub(one, text)


def splitArguments(text: str, platform: int = 2) -> list[str]:
    """Extension: a command line's words as the node's platform reads them
    (`platform` as onBuildCommandLine gets it: 1 Windows, 2 Linux, 3 macOS):
    POSIX shell rules, but on Windows a backslash is kept (paths) and quotes
    only group words."""
    if platform != 1:
        return shlex.split(text)
    words = shlex.split(text, posix=False)
    return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] and w[0] in "\"'" else w for w in words]


def expandTokens(text: str, job: Any, chunk: Any) -> str:
    """Extension: `text` with the frame tokens of `chunk` of `job` put in.

    `{start}` `{end}` `{step}` the chunk's first and last frame and step;
    `{start:N}` `{end:N}` zero-padded to N digits; `{frame}` = `{start}`;
    `{slice}` the slice index; `{chunk}` `{job}` the ids; `{@name}` the job
    attribute `name` (whose own frame tokens expand too; missing: empty);
    `{{` `}}` literal braces. An unknown token raises ValueError naming it;
    with `chunk` None (onGetApplicationPath has none) only `{job}` and
    attributes expand."""
    return _Tokens(job, chunk).expand(text)


def expandArguments(arguments: Iterable[str], job: Any, chunk: Any) -> list[str]:
    """Extension: a list of arguments with their tokens expanded
    (`expandTokens`); an argument that is exactly `{*name}` becomes the job
    attribute `name` split like a POSIX shell would, one argument per word
    (each word's tokens expanded), or no argument when it is missing."""
    tokens = _Tokens(job, chunk)
    result: list[str] = []
    for argument in arguments:
        splat = _SPLAT.fullmatch(argument)
        if splat:
            words = shlex.split(tokens.attributes.get(splat[1], ""))
            result.extend(tokens.expand(word) for word in words)
        else:
            result.append(tokens.expand(argument))
    return result


def applicationPath(
    prefs: Mapping[str, Any], item_name: str, pathOut: MStringRef
) -> MTemplateError:
    """Extension: the usual onGetApplicationPath: the node's client
    configuration item `item_name` (its default unless an administrator set
    it) written to `pathOut`; an empty value is an error naming the item."""
    path = str(prefs.get(item_name) or "").strip()
    if not path:
        return MTemplateError(
            1,
            f"the client configuration item {item_name} (the application's path) is empty "
            "on this node",
            MTemplateError.kTemplateErrorTypeError,
        )
    pathOut.setString(path)
    return MTemplateError()


def enableApplication(
    template: MTemplate,
    item_name: str,
    label: str,
    paths: Mapping[str, str],
    detection: int = kProcessDirect,
) -> None:
    """Extension: enable the platform sections of `paths` ("windows",
    "linux", "macos" -> the application's default path there), each with
    error checks on and a client configuration item `item_name` holding that
    path (a node's administrator changes it per node)."""
    for platform_name, default in paths.items():
        section = template.platform(platform_name)
        section.setPlatformEnabled(True)
        section.setEnabledByDefault(True)
        section.setEnableErrorCheck(True)
        section.setFramesFloating(0)
        section.setDetectionLogic(detection)
        section.addClientConfigurationItem(
            MTemplateItemFile(
                item_name, label, f"Path of {label} on this node", default, 0, 1, 1, "*"
            )
        )
