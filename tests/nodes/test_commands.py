"""Waiting for an agent's answer to a command, without gRPC (real database).

The agent's side is played by the test: it finds the command row and answers
it the way the stream handler does (NodesService.command_answered).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import text

from muster_services.core.database import Database
from muster_services.core.errors import DeadlineExceeded, FailedPrecondition
from muster_services.nodes import commands
from muster_services.nodes.commands import CodeOutput
from muster_services.nodes.service import NodesService


def _online_node(db: Database) -> int:
    with db.transaction() as session:
        return int(
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                    " last_heartbeat_at) VALUES ('cmd-1', 'cmd-1', 'linux', 'idle', 's1', now())"
                    " RETURNING id"
                )
            ).scalar_one()
        )


async def _answer_when_queued(
    db: Database, service: NodesService, kind: str, result: dict[str, Any], acknowledge: bool
) -> None:
    """The agent: wait for the command of `kind`, then answer it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.transaction() as session:
            command_id = session.execute(
                text("SELECT id FROM node_commands WHERE kind = :k"), {"k": kind}
            ).scalar()
        if command_id is not None:
            await asyncio.to_thread(service.command_answered, command_id, result, acknowledge)
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} command was queued")


def test_python_code_output_comes_back_from_the_answer(db: Database) -> None:
    service = NodesService(db, "test-replica")
    node_id = _online_node(db)

    async def scenario() -> CodeOutput:
        agent = asyncio.ensure_future(
            _answer_when_queued(
                db,
                service,
                "run_python_code",
                {"output": "42\n", "exit_code": 3, "timed_out": False, "ok": True},
                False,
            )
        )
        output = await commands.run_python_code(service, node_id, "print(6*7)", 5)
        await agent
        return output

    assert asyncio.run(scenario()) == CodeOutput("42\n", 3, False)


def test_an_acknowledgement_alone_does_not_end_the_wait_for_output(db: Database) -> None:
    service = NodesService(db, "test-replica")
    command_id = service.run_python_code(_online_node(db), "print(1)", 5)
    service.command_answered(command_id, {"ok": True, "message": ""}, True)

    with pytest.raises(DeadlineExceeded, match=f"command {command_id}"):
        asyncio.run(commands.answer(service, command_id, "output", 0.3))


def test_a_refused_system_event_is_failed_precondition_with_the_agents_reason(
    db: Database,
) -> None:
    service = NodesService(db, "test-replica")
    node_id = _online_node(db)

    async def scenario() -> None:
        agent = asyncio.ensure_future(
            _answer_when_queued(
                db, service, "system_event", {"ok": False, "message": "not allowed here"}, True
            )
        )
        try:
            await commands.send_system_event(service, node_id, "reboot")
        finally:
            await agent

    with pytest.raises(FailedPrecondition, match="not allowed here"):
        asyncio.run(scenario())


def test_an_accepted_system_event_returns(db: Database) -> None:
    service = NodesService(db, "test-replica")
    node_id = _online_node(db)

    async def scenario() -> None:
        agent = asyncio.ensure_future(
            _answer_when_queued(db, service, "system_event", {"ok": True, "message": ""}, True)
        )
        await commands.send_system_event(service, node_id, "reboot")
        await agent

    asyncio.run(scenario())
