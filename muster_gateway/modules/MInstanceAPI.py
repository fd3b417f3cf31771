"""Muster's `MInstanceAPI`: the render client's own instances.

Works in code a render client runs (runningContext() == "renderclient": code
sent with nodeRunPythonCode, template node callbacks); the agent tells that
code about its instances (muster_gateway/context.py). Elsewhere every function
returns a kErrorWrongContext MUSTERERR and empty results, never raises.

    err, count = MInstanceAPI.getRunningInstances()
    err, status = MInstanceAPI.getInstanceStatus(0)
    if status == MInstanceAPI.kInstanceStatusRendering: ...

Statuses are MClientAPI.MNode.kNodeStatus*'s numbers (docs/api-compatibility.md).
"""

from typing import Any

from muster_gateway import context, errors
from muster_gateway.errors import MUSTERERR

kInstanceStatusIdle = context.STATUS_IDLE
kInstanceStatusRendering = context.STATUS_RENDERING
kInstanceStatusPaused = context.STATUS_PAUSED
kInstanceStatusOffline = context.STATUS_OFFLINE


def _render_client(function: str) -> tuple[MUSTERERR, context.RenderClient | None]:
    current = context.running_context()
    if current != "renderclient":
        return MUSTERERR(
            errors.kErrorWrongContext,
            f"{function}: MInstanceAPI works only in the renderclient context, not {current!r}",
        ), None
    client = context.render_client()
    if client is None:
        return MUSTERERR(
            errors.kErrorNotConfigured,
            f"{function}: the render client did not say what its instances are"
            f" ({context.RENDER_CLIENT_VARIABLE} is unset or unreadable)",
        ), None
    return errors.SUCCESS, client


def getRunningInstances() -> tuple[MUSTERERR, int]:
    """How many instances this render client (agent) runs."""
    err, client = _render_client("getRunningInstances")
    return err, len(client.instances) if client else 0


def getInstanceStatus(instance: Any) -> tuple[MUSTERERR, int]:
    """The status of instance number `instance` (0 is the first): one of the
    kInstanceStatus* constants."""
    err, client = _render_client("getInstanceStatus")
    if client is None:
        return err, 0
    if isinstance(instance, bool) or not isinstance(instance, int):
        return MUSTERERR(
            errors.kErrorBadArguments,
            f"getInstanceStatus: instance must be an int, not {type(instance).__name__}",
        ), 0
    state = client.find(instance)
    if state is None:
        numbers = ", ".join(str(i.number) for i in client.instances)
        return MUSTERERR(
            errors.kErrorNotFound,
            f"getInstanceStatus: this render client has no instance {instance} (it has {numbers})",
        ), 0
    return errors.SUCCESS, state.status


__all__ = [
    "MUSTERERR",
    "getInstanceStatus",
    "getRunningInstances",
    "kInstanceStatusIdle",
    "kInstanceStatusOffline",
    "kInstanceStatusPaused",
    "kInstanceStatusRendering",
]
