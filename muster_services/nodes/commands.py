"""Commands whose caller waits for the agent's answer (system events, Python code).

The command is a row in node_commands (NodesService); whichever replica holds
the agent's stream delivers it and merges the agent's answer into the row,
where these functions wait for it. Async: the waiting does not hold a thread.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from muster_services.core.errors import DeadlineExceeded, FailedPrecondition
from muster_services.nodes.domain import DEFAULT_CODE_TIMEOUT_SECONDS
from muster_services.nodes.service import NodesService

# How long a caller waits for an agent's answer beyond the command's own time.
ANSWER_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class CodeOutput:
    """What a node's Python code printed and how it ended."""

    output: str
    exit_code: int
    timed_out: bool


async def answer(
    service: NodesService, command_id: int, key: str, timeout: float
) -> dict[str, Any]:
    """Wait for the agent's answer to a command (held by any replica): a result
    that has `key`, or a refusal (`ok` false); DeadlineExceeded after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        row = await asyncio.to_thread(service.command, command_id)
        result = dict(row.result or {}) if row is not None else {}
        if key in result or (result and result.get("ok") is False):
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise DeadlineExceeded(f"the node did not answer command {command_id} within {timeout:.0f}s")


async def send_system_event(service: NodesService, node_id: int, event: str) -> None:
    """Have the node's agent carry out a system event; FailedPrecondition when it refuses."""
    command_id = await asyncio.to_thread(
        service.simple_command, node_id, "system_event", {"event": event}
    )
    result = await answer(service, command_id, "ok", ANSWER_GRACE_SECONDS)
    if not result.get("ok"):
        raise FailedPrecondition(str(result.get("message") or f"{event} refused by the node"))


async def run_python_code(
    service: NodesService, node_id: int, code: str, timeout_seconds: int
) -> CodeOutput:
    """Run code on the node's agent and wait for its output (0: the default time)."""
    timeout = timeout_seconds or DEFAULT_CODE_TIMEOUT_SECONDS
    command_id = await asyncio.to_thread(service.run_python_code, node_id, code, timeout)
    result = await answer(service, command_id, "output", timeout + ANSWER_GRACE_SECONDS)
    return CodeOutput(
        output=str(result.get("output", "")),
        exit_code=int(result.get("exit_code", 0)),
        timed_out=bool(result.get("timed_out", False)),
    )
