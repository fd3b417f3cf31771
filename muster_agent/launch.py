"""The launcher: the agent's direct child for every chunk, so that the chunk
dies with the agent.

    python -I -S muster_agent/launch.py --parent PID --status FD [--user UID GID GROUPS] \
        [--lease FILE] -- EXECUTABLE [ARGUMENT...]

The agent starts it in a session (and so a process group) of its own; it is
that group's leader and stays so for the life of the render process:

0. when the chunk runs as another user, it takes that identity first (the
   agent, root, starts it as root: the launcher's file and interpreter need
   be reachable by the agent's user only);
1. it arranges to learn when the agent dies, however it dies (SIGKILL too):
   on Linux the kernel's parent-death signal (prctl PR_SET_PDEATHSIG), on
   other systems (macOS) a look at its parent's id twice a second;
2. it starts the render process (posix_spawn: a failure to start comes back
   here as an OSError, and is written to STATUS_FD for the agent, which then
   reports "cannot start ..." as without a launcher; the descriptor closes
   empty once the process runs);
3. it waits for it and exits the way it did: the same exit code, or killed by
   the same signal (the agent's SIGTERM on a kill reaches the whole group;
   this process lets the render process decide when to end);
4. when the agent dies, it kills its whole process group with SIGKILL, itself
   last: the render process and everything it started (a parent-death signal
   reaches only the direct child; the rest of the group is why this process
   stays alive instead of exec'ing the renderer);
5. with --lease, it kills its group the same way once the agent's lease has
   run out: the agent writes in FILE until when the dispatcher knows it alive
   (muster_agent/lease.py); an agent that cannot renew it (stopped by SIGSTOP, a
   frozen machine, cut off from every dispatcher replica) is soon declared
   lost and its chunk given to another node, and the render must be gone by
   then, which the agent, not running, cannot see to. The file is opened
   before the launcher takes the chunk's user, and read twice a second.

Why a process, and not `preexec_fn` or `posix_spawn` in the agent: the agent
is multi-threaded (gRPC's threads), and code run between fork and exec in a
multi-threaded process can deadlock (preexec_fn is documented unsafe there);
posix_spawn has no parent-death attribute. The launcher is single-threaded,
so it may do anything before it starts the renderer.

The kernel sends the parent-death signal when the *thread* that forked the
child ends, not the process: the agent starts every chunk from its event
loop's thread, which lives as long as the agent.

Standard library only, and run with -I -S (no site, no user paths): it must
start fast and never pick up a render job's PYTHONPATH. Not imported by the
agent: muster_agent/system.py names it (`launch_command`).
"""

from __future__ import annotations

import math
import os
import signal
import struct
import sys
import time

if sys.platform.startswith("linux"):
    # Imported now: once the launcher took a chunk's user, the interpreter's
    # files may be out of its reach.
    import ctypes

# The signal the kernel sends when the agent dies (Linux). Caught: on it the
# launcher kills its group. Any other sender is ignored (the parent check).
DEATH_SIGNAL = signal.SIGUSR1
# How often the launcher checks the lease, and elsewhere than on Linux that
# the agent is still its parent.
CHECK_SECONDS = 0.5
# The lease file: the deadline twice (a reader that sees two different
# values read during a write and reads again), as float64 seconds of
# lease_clock(); infinite = no lease.
LEASE_FORMAT = "<dd"
LEASE_SIZE = 16
PR_SET_PDEATHSIG = 1
# Signals the agent sends the group to stop it (and a terminal's): the
# render process takes them; the launcher stays to report how it ended.
_STAY = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
# Python ignores these at start; the render process gets the defaults back.
_DEFAULTS = {signal.SIGPIPE, signal.SIGXFSZ}


def _kill_group() -> None:
    os.killpg(0, signal.SIGKILL)  # every process of the group, this one included
    os._exit(137)  # not reached


def _stay(signum: int, frame: object) -> None:
    """A stop signal reaches the render process too (it is for the group)."""


def lease_clock() -> float:
    """Seconds of a clock every process of the machine shares, that never
    goes back and (Linux) counts time spent suspended."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return time.monotonic()


def read_lease(fd: int) -> float:
    """The deadline in a lease file (infinite when it holds none yet)."""
    for _ in range(3):
        data = os.pread(fd, LEASE_SIZE, 0)
        if len(data) < LEASE_SIZE:
            return math.inf
        first, second = struct.unpack(LEASE_FORMAT, data)
        if first == second:
            return float(first)
    return math.inf  # written all along: the agent is alive


def watch(parent: int, lease_fd: int | None) -> None:
    """Kill the group once `parent` is no longer this process's parent, or
    once the lease in `lease_fd` ran out."""

    def orphaned(signum: int, frame: object) -> None:
        if os.getppid() != parent:
            _kill_group()

    def check(signum: int, frame: object) -> None:
        if not linux:
            orphaned(signum, frame)
        if lease_fd is not None and lease_clock() > read_lease(lease_fd):
            _kill_group()

    linux = sys.platform.startswith("linux")
    if linux:
        signal.signal(DEATH_SIGNAL, orphaned)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if not linux or lease_fd is not None:
        signal.signal(signal.SIGALRM, check)
        signal.setitimer(signal.ITIMER_REAL, CHECK_SECONDS, CHECK_SECONDS)
    # The agent may have died (or its lease run out) before the watch began.
    orphaned(0, None)
    check(0, None)


def exit_like(status: int) -> None:
    """End this process the way the render process ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal that does not kill (cannot happen for a dead child)
    os._exit(os.waitstatus_to_exitcode(status))


Parsed = tuple[int, int, tuple[int, int, list[int]] | None, str | None, list[str]]


def parse(argv: list[str]) -> Parsed:
    """(agent pid, status fd, (uid, gid, groups) or None, lease file or None,
    command); no argparse: it would cost this short-lived start more than the
    parsing."""
    split = argv.index("--")
    options, command = argv[1:split], argv[split + 1 :]
    parent = int(options[options.index("--parent") + 1])
    status_fd = int(options[options.index("--status") + 1])
    user = None
    if "--user" in options:
        at = options.index("--user")
        uid, gid, groups = options[at + 1 : at + 4]
        user = (int(uid), int(gid), [int(g) for g in groups.split(",") if g])
    lease = options[options.index("--lease") + 1] if "--lease" in options else None
    if not command:
        raise SystemExit("launch: no command after --")
    return parent, status_fd, user, lease, command


def become(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def main(argv: list[str]) -> None:
    parent, status_fd, user, lease, command = parse(argv)
    os.set_inheritable(status_fd, False)  # the render process must not hold it open
    for sig in _STAY:
        signal.signal(sig, _stay)  # a handler, not SIG_IGN: exec resets it to the default
    try:
        # Opened while the launcher is still the agent's user (not inherited).
        lease_fd = os.open(lease, os.O_RDONLY) if lease is not None else None
        if user is not None:
            # Before the parent-death signal: a change of identity clears it.
            become(*user)
        watch(parent, lease_fd)
    except OSError as exc:
        os.write(status_fd, f"{exc.errno or 0} {exc.strerror or exc}".encode())
        os._exit(127)
    try:
        child = os.posix_spawnp(command[0], command, os.environ, setsigdef=_DEFAULTS)
    except OSError as exc:
        os.write(status_fd, f"{exc.errno or 0} {exc.strerror or exc}".encode())
        os._exit(127)
    os.close(status_fd)  # empty: started
    while True:
        pid, status = os.waitpid(child, 0)  # retried after a signal (PEP 475)
        if pid == child:
            exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
