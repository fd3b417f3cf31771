"""Fixtures for the agent's tests: a configuration in a temporary work folder.

The agent's tests run real child processes and real protobuf messages; the
session loop's transport is exercised end to end against the real nodes
service elsewhere, never against a fake one here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from muster_agent.config import AgentConfig


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        dispatcher="127.0.0.1:50051",
        instances=1,
        name="test-node",
        work_dir=tmp_path,
        kill_grace_seconds=0.5,
    )
