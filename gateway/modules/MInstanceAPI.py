"""Muster's `MInstanceAPI`: the render client's own instances.

Muster offers it to code a render client runs (runningContext() == "renderclient");
elsewhere every function returns a non-zero MUSTERERR saying so. The agent
(agent/) keeps no instance list a script could query and runs the code it is
given (nodeRunPythonCode) in the "console" context, so in the renderclient
context the functions answer kErrorNotImplemented.
"""

from typing import Any

from gateway import errors
from gateway.context import running_context
from gateway.errors import MUSTERERR


def _unavailable(function: str) -> MUSTERERR:
    context = running_context()
    if context != "renderclient":
        return MUSTERERR(
            errors.kErrorWrongContext,
            f"{function}: MInstanceAPI works only in the renderclient context, not {context!r}",
        )
    return MUSTERERR(errors.kErrorNotImplemented, f"{function}: no render client is running here")


def getRunningInstances() -> tuple[MUSTERERR, list[Any]]:
    return _unavailable("getRunningInstances"), []


def getInstanceStatus(instance: int) -> tuple[MUSTERERR, int]:
    return _unavailable("getInstanceStatus"), 0
