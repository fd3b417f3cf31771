"""The running context (`muster.runningContext()`) and what a render client
tells the code it runs about its instances (MInstanceAPI).

"dispatcher" inside dispatcher hooks and `muster-script`, "renderclient" in
code the agent runs (nodeRunPythonCode, template node callbacks),
"notificator" in the notificator, "console" otherwise. The process that runs
a context sets MUSTER_RUNNING_CONTEXT for its code.

In the renderclient context the agent also sets MUSTER_RENDER_CLIENT: JSON
{"instance": the number of the instance running the code, "instances": [one
InstanceState per instance of the agent]}, as they were when the code started
(the template host gets it afresh with every callback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

CONTEXTS = ("console", "dispatcher", "renderclient", "notificator")
CONTEXT_VARIABLE = "MUSTER_RUNNING_CONTEXT"
RENDER_CLIENT_VARIABLE = "MUSTER_RENDER_CLIENT"

# An instance's status: farm.nodes.v1.NodeStatus's numbers, so that they equal
# MClientAPI.MNode.kNodeStatus* (and MInstanceAPI.kInstanceStatus*).
STATUS_IDLE = 1
STATUS_RENDERING = 2
STATUS_PAUSED = 3
STATUS_OFFLINE = 4


def running_context() -> str:
    value = os.environ.get(CONTEXT_VARIABLE, "").strip().lower()
    return value if value in CONTEXTS else "console"


@dataclass(frozen=True)
class InstanceState:
    """One instance of a render client, as MInstanceAPI reports it."""

    number: int
    status: int
    node_id: int = 0  # 0 before the dispatcher registered it
    job_id: int = 0  # the running chunk's, 0 when none
    chunk_id: int = 0


@dataclass(frozen=True)
class RenderClient:
    """The render client running this code: which instance, and all of them."""

    instance: int
    instances: tuple[InstanceState, ...]

    def find(self, number: int) -> InstanceState | None:
        return next((i for i in self.instances if i.number == number), None)


def render_client_environment(current: int, instances: Sequence[InstanceState]) -> dict[str, str]:
    """The variables a render client gives the code it runs."""
    state = {"instance": current, "instances": [asdict(i) for i in instances]}
    return {CONTEXT_VARIABLE: "renderclient", RENDER_CLIENT_VARIABLE: json.dumps(state)}


def render_client(environ: Mapping[str, str] | None = None) -> RenderClient | None:
    """What the render client said (None outside one, or if unreadable)."""
    text = (os.environ if environ is None else environ).get(RENDER_CLIENT_VARIABLE, "")
    try:
        state = json.loads(text)
        return RenderClient(
            int(state["instance"]),
            tuple(InstanceState(**dict(i)) for i in state["instances"]),
        )
    except (ValueError, TypeError, KeyError):
        return None
