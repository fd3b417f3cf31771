"""What the agent keeps on disk between runs, in its work folder.

- `state.json`: per dispatcher address and instance number, the node id the
  dispatcher gave that instance, the chunk it is running (job, chunk, fencing
  token, process id: written before the process starts) and the chunk
  results it has not yet acknowledged (written before they are sent). A soft
  restart (or any restart) then re-registers as the same nodes and re-sends
  those results, so nothing is reported twice as a new node and nothing is
  lost; a chunk found running in the file belongs to an agent that died
  (SIGKILL, power cut): the new process ends what is left of it and reports
  it failed with its old token (the dispatcher refuses it if the chunk went
  elsewhere meanwhile). Ids are kept per address because a node id of one
  farm means another machine on a different farm. Every write is flushed to
  disk (fsync) before it replaces the old file.
- `agent.lock`: held for the life of the process, so two agents never share a
  work folder (they would claim the same node ids).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any, TextIO

from muster_proto.agent.v1 import agent_pb2

_LOG = logging.getLogger("muster-agent")

STATE_FILE = "state.json"
LOCK_FILE = "agent.lock"


class WorkDirBusy(Exception):
    """Another agent process holds the work folder."""


def lock_work_dir(work_dir: Path) -> TextIO:
    """Take the work folder for this process; keep the returned file open.

    The descriptor is close-on-exec (Python's default), so a soft restart
    (execv) releases it and the new image takes it again.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    handle = (work_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise WorkDirBusy(
            f"another muster-agent is using {work_dir} (give each agent its own --work-dir)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class StateStore:
    """Node ids and unacknowledged results of this agent's instances for one dispatcher."""

    def __init__(self, work_dir: Path, dispatcher: str) -> None:
        self.path = work_dir / STATE_FILE
        self.dispatcher = dispatcher
        self._data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A damaged file costs new node ids, never a refusal to start.
            _LOG.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _instance(self, number: int) -> dict[str, Any]:
        farms = self._data.setdefault("dispatchers", {})
        instances = farms.setdefault(self.dispatcher, {})
        entry = instances.setdefault(str(number), {})
        return entry if isinstance(entry, dict) else {}

    def node_id(self, number: int) -> int:
        value = self._instance(number).get("node_id", 0)
        return value if isinstance(value, int) else 0

    def pending_results(self, number: int) -> list[agent_pb2.ChunkResult]:
        results = []
        for encoded in self._instance(number).get("pending_results", []):
            with contextlib.suppress(ValueError, TypeError):
                results.append(agent_pb2.ChunkResult.FromString(base64.b64decode(encoded)))
        return results

    def running_chunk(self, number: int) -> agent_pb2.RunningChunk | None:
        """The chunk this instance was running when its agent last wrote the file."""
        encoded = self._instance(number).get("running_chunk")
        if not isinstance(encoded, str):
            return None
        try:
            return agent_pb2.RunningChunk.FromString(base64.b64decode(encoded))
        except (ValueError, TypeError):
            return None

    def save(
        self,
        number: int,
        node_id: int,
        pending: list[agent_pb2.ChunkResult],
        running: agent_pb2.RunningChunk | None = None,
    ) -> None:
        entry = self._instance(number)
        entry["node_id"] = node_id
        entry["pending_results"] = [
            base64.b64encode(r.SerializeToString()).decode() for r in pending
        ]
        if running is None:
            entry.pop("running_chunk", None)
        else:
            entry["running_chunk"] = base64.b64encode(running.SerializeToString()).decode()
        self._data["dispatchers"][self.dispatcher][str(number)] = entry
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w") as handle:
            handle.write(json.dumps(self._data, indent=2, sort_keys=True) + "\n")
            handle.flush()
            # On disk before it counts: the chunk it names may start right after.
            os.fsync(handle.fileno())
        # Replace, not rewrite: a crash mid-write leaves the old file whole.
        temporary.replace(self.path)
