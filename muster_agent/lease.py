"""An agent instance's lease: until when the dispatcher knows it alive.

The dispatcher declares a node lost when it has recorded no heartbeat of it
for its lost timeout, and gives the node's chunks to other nodes. A render
process must not outlive that moment, even when the agent cannot act: an
agent stopped by SIGSTOP or in a frozen virtual machine runs no code, and an
agent cut off from every nodes replica cannot know what the dispatcher
decided. So every heartbeat carries a sequence number; once the dispatcher
has recorded it (in its database, where the lost-node sweep looks), it
answers HeartbeatRecorded with the lease's length, shorter than the lost
timeout (muster_services/nodes/timings.py); the lease then runs to that length
after the heartbeat was *sent*, by this machine's clock, which is before the
dispatcher's own count began. The agent writes the deadline to a small file
that each chunk's launcher (muster_agent/launch.py) reads twice a second: once the
deadline passes, the launcher kills the render's process group. The lease
starts with the Register the dispatcher accepted.

A lease that ran out is the agent's own word that its node is lost: the
chunk's result says LOST, as the dispatcher's would have (it goes back to
the queue without counting against the node).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from pathlib import Path

from muster_agent.launch import LEASE_FORMAT, lease_clock

# Heartbeats sent and not yet answered, kept at most (older ones are dropped:
# an answer names the newest heartbeat recorded, which renews for them all).
MAX_UNANSWERED = 64


class Lease:
    """One instance's lease and its file (created empty: no deadline yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.set_inheritable(self._fd, False)
        self.deadline = math.inf
        self.seconds = 0.0
        self._sent: dict[int, float] = {}
        self._register_sent = 0.0
        self._write(math.inf)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    # --- what the session tells -------------------------------------------------

    def register_sent(self) -> None:
        self._register_sent = lease_clock()
        self._sent.clear()

    def accepted(self, lease_seconds: float) -> None:
        """The dispatcher accepted the Register: the lease runs from its send."""
        self.seconds = lease_seconds
        if lease_seconds <= 0:  # an older dispatcher: no lease
            self._grant(math.inf)
        else:
            self._grant(self._register_sent + lease_seconds)

    def heartbeat_sent(self, sequence: int) -> None:
        self._sent[sequence] = lease_clock()
        while len(self._sent) > MAX_UNANSWERED:
            del self._sent[min(self._sent)]

    def recorded(self, sequence: int, lease_seconds: float) -> None:
        """The dispatcher recorded heartbeats up to `sequence`."""
        sent = self._sent.get(sequence)
        for older in [s for s in self._sent if s <= sequence]:
            del self._sent[older]
        if sent is None or lease_seconds <= 0:
            return
        self.seconds = lease_seconds
        self._grant(sent + lease_seconds)

    # --- what the runs ask ---------------------------------------------------------

    def expired(self) -> bool:
        return lease_clock() > self.deadline

    def _grant(self, deadline: float) -> None:
        if deadline == self.deadline:
            return
        self.deadline = deadline
        self._write(deadline)

    def _write(self, deadline: float) -> None:
        # One 16-byte write at offset 0: the launcher, which keeps the file
        # open from before it changed user, reads the same inode.
        os.pwrite(self._fd, struct.pack(LEASE_FORMAT, deadline, deadline), 0)
