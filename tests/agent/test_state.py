"""The state file (node ids, unacknowledged results) and the work-folder lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from muster_agent.state import StateStore, WorkDirBusy, lock_work_dir
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2


def test_node_ids_and_results_survive_a_new_process(tmp_path: Path) -> None:
    result = agent_pb2.ChunkResult(
        job_id=3, chunk_id=9, fencing_token=77, outcome=common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED
    )
    first = StateStore(tmp_path, "farm:50051")
    assert first.node_id(0) == 0
    first.save(0, 12, [result])
    first.save(1, 13, [])
    # Read back by another interpreter, as after a soft restart.
    code = (
        "import sys; from muster_agent.state import StateStore;"
        f" s = StateStore(__import__('pathlib').Path({str(tmp_path)!r}), 'farm:50051');"
        " print(s.node_id(0), s.node_id(1), [r.fencing_token for r in s.pending_results(0)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split("\n")[0] == "12 13 [77]"
    again = StateStore(tmp_path, "farm:50051")
    assert again.pending_results(0) == [result]
    again.save(0, 12, [])
    assert StateStore(tmp_path, "farm:50051").pending_results(0) == []


def test_node_ids_are_kept_per_dispatcher(tmp_path: Path) -> None:
    StateStore(tmp_path, "farm-a:50051").save(0, 5, [])
    StateStore(tmp_path, "farm-b:50051").save(0, 900, [])
    assert StateStore(tmp_path, "farm-a:50051").node_id(0) == 5
    assert StateStore(tmp_path, "farm-b:50051").node_id(0) == 900
    assert StateStore(tmp_path, "farm-c:50051").node_id(0) == 0


def test_a_damaged_state_file_costs_only_the_ids(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    store = StateStore(tmp_path, "farm:1")
    assert store.node_id(0) == 0
    store.save(0, 4, [])
    assert StateStore(tmp_path, "farm:1").node_id(0) == 4


def test_two_agents_cannot_share_a_work_folder(tmp_path: Path) -> None:
    held = lock_work_dir(tmp_path / "work")
    try:
        code = (
            "import pathlib, sys; from muster_agent.state import lock_work_dir, WorkDirBusy\n"
            "try:\n"
            f"    lock_work_dir(pathlib.Path({str(tmp_path / 'work')!r}))\n"
            "except WorkDirBusy as exc:\n"
            "    print(exc); sys.exit(3)\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 3
        assert "another muster-agent" in other.stdout
    finally:
        held.close()
    lock_work_dir(tmp_path / "work").close()  # free again once the first let go


def test_the_lock_refuses_in_process_too(tmp_path: Path) -> None:
    held = lock_work_dir(tmp_path)
    try:
        with pytest.raises(WorkDirBusy):
            lock_work_dir(tmp_path)
    finally:
        held.close()


def test_the_running_chunk_is_kept_until_it_ends(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "farm:50051")
    assert store.running_chunk(0) is None
    running = agent_pb2.RunningChunk(job_id=3, chunk_id=9, fencing_token=78, pid=4242)
    store.save(0, 12, [], running)
    assert StateStore(tmp_path, "farm:50051").running_chunk(0) == running
    assert StateStore(tmp_path, "farm:50051").running_chunk(1) is None
    store.save(0, 12, [])
    assert StateStore(tmp_path, "farm:50051").running_chunk(0) is None
