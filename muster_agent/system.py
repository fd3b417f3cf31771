"""Facts about the host the agent reports, the process-priority mapping, and
the platform-specific part of a chunk's process group.

Only the standard library: the agent must stay small in memory, and these
facts are cheap to read from /proc and sysconf on Linux (macOS gets the
portable subset). Windows is not supported by this agent (process groups and
nice values are POSIX).

Process groups (one per chunk): `launch_command` starts the render process
through muster_agent/launch.py, which makes the group die with the agent (Linux: the
parent-death signal; macOS: a parent check); `group_members`, `group_alive`,
`signal_group` and `process_start_seconds` read /proc on Linux and fall back
to kill(2) elsewhere. Nothing else in the agent knows the platform.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import platform
import pwd
import signal
import socket
import struct
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from muster_proto.common.v1 import common_pb2

if TYPE_CHECKING:
    from typing import TypeAlias  # novermin (annotations only: never imported at run time)

Priority: TypeAlias = common_pb2.ProcessPriority.ValueType

# ProcessPriority -> nice value, as common.proto defines it for Linux and macOS.
NICE_VALUES: dict[int, int] = {
    common_pb2.PROCESS_PRIORITY_IDLE: 19,
    common_pb2.PROCESS_PRIORITY_BELOW_NORMAL: 10,
    common_pb2.PROCESS_PRIORITY_NORMAL: 0,
    common_pb2.PROCESS_PRIORITY_ABOVE_NORMAL: -5,
    common_pb2.PROCESS_PRIORITY_HIGH: -10,
}
DEFAULT_PRIORITY: Priority = common_pb2.PROCESS_PRIORITY_NORMAL

# A UDP "connect" sends nothing; it only asks the kernel which source address
# it would route from. This public address finds the main card when the
# dispatcher itself is on loopback.
_ROUTE_PROBE = ("192.0.2.1", 9)  # TEST-NET-1: routed by the default route, never answered
_SIOCGIFADDR = 0x8915


def nice_value(priority: int) -> int | None:
    """The nice value of a ProcessPriority; None for UNSPECIFIED (keep the current one)."""
    return NICE_VALUES.get(priority)


def set_group_priority(pgid: int, priority: int) -> None:
    """Apply a ProcessPriority to every process of a process group (raises OSError)."""
    nice = nice_value(priority)
    if nice is not None:
        os.setpriority(os.PRIO_PGRP, pgid, nice)


class CannotRunAs(Exception):
    """The agent cannot run a process as the user an assignment asks for."""


@dataclass(frozen=True)
class RunAs:
    """The identity a render process takes (subprocess user/group/extra_groups)."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def environment(self) -> dict[str, str]:
        return {"USER": self.user, "LOGNAME": self.user, "HOME": self.home}


def run_as(user: str) -> RunAs | None:
    """The identity for an assignment's `run_as_user`; None when the process
    simply runs as the agent (no user asked, or the agent's own user).

    Raises CannotRunAs when the user does not exist on this node, or when it
    is another user and the agent is not root: the process never silently
    runs as the agent instead.
    """
    if not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CannotRunAs(f"cannot run as user {user!r}: no such user on this node") from None
    own = os.geteuid()
    if entry.pw_uid == own:
        return None
    if own != 0:
        raise CannotRunAs(
            f"cannot run as user {user!r}: the agent runs as uid {own}, and only an agent"
            " running as root may start processes as another user"
        )
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


# --- a chunk's process group ------------------------------------------------------------

LAUNCHER = Path(__file__).with_name("launch.py")


def launch_command(
    executable: str,
    arguments: Sequence[str],
    status_fd: int,
    identity: RunAs | None = None,
    lease: Path | None = None,
) -> list[str]:
    """The command that runs `executable` as a chunk's render process, in a
    process group that dies with this agent (see muster_agent/launch.py), as
    `identity` when given (the launcher switches to it), and stops once the
    agent's `lease` file says it ran out (muster_agent/lease.py); a failure to start
    it is written to `status_fd` (left open for the launcher)."""
    user = []
    if identity is not None:
        groups = ",".join(str(g) for g in identity.groups)
        user = ["--user", str(identity.uid), str(identity.gid), groups]
    if lease is not None:
        user += ["--lease", str(lease)]
    return [
        sys.executable,
        "-I",  # isolated: no PYTHON* variables of the job, no user site
        "-S",  # no site: the launcher needs the standard library only, and starts faster
        str(LAUNCHER),
        "--parent",
        str(os.getpid()),
        "--status",
        str(status_fd),
        *user,
        "--",
        executable,
        *arguments,
    ]


def _stat_fields(pid: str | int) -> list[bytes] | None:
    """/proc/PID/stat after the command: state ppid pgrp ... (None: gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
            return stat.read().rpartition(b")")[2].split()
    except OSError:
        return None


def group_members(pgid: int) -> list[int] | None:
    """The live (not zombie) processes of a process group; None when the
    system has no /proc to tell (then only `group_alive` can)."""
    if not os.path.isdir("/proc/self"):
        return None
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            # state ppid pgrp: a zombie is dead (its group may be awaiting init).
            if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
                members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process remains in the group.

    Orphaned children of the render process are reaped by init, which may
    take its time (some container inits reap every few seconds): a zombie is
    dead and must not hold up the end of a kill, so on Linux /proc is read.
    """
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its user id: still there
        return True
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def process_start_seconds(pid: int) -> float | None:
    """When a live process started (seconds since the epoch), from /proc; None
    when it is gone (a zombie is) or the system has no /proc."""
    fields = _stat_fields(pid)
    if fields is not None and fields[:1] == [b"Z"]:
        return None
    try:
        with open("/proc/stat", "rb") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith(b"btime "))
    except (OSError, StopIteration, ValueError):
        return None
    if fields is None or len(fields) < 20:
        return None
    # Field 22 of stat (the 20th after the command): start time in clock ticks since boot.
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def release_free_memory() -> bool:
    """Give the memory the process freed back to the system (glibc's
    `malloc_trim(0)`: free pages inside the heap and the arenas, not only its
    top). What a Python process frees stays resident otherwise: an agent idle
    after starting or after a chunk keeps about 1-1.5 MB it no longer uses
    (docs/agent.md, Memory). False where there is no such call (musl, other
    systems)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # already loaded on Linux (muster_agent/launch.py)

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


@dataclass(frozen=True)
class HostFacts:
    host_name: str
    platform: int
    os_version: str
    cpu_cores: int
    memory_bytes: int
    ip_address: str
    mac_address: str


def current_platform() -> int:
    if sys.platform.startswith("linux"):
        return common_pb2.PLATFORM_LINUX
    if sys.platform == "darwin":
        return common_pb2.PLATFORM_MACOS
    if sys.platform.startswith("win"):
        return common_pb2.PLATFORM_WINDOWS
    return common_pb2.PLATFORM_LINUX  # other Unixes behave like Linux for the dispatcher


def os_version() -> str:
    kernel = f"{platform.system()} {platform.release()}"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip().strip(chr(34))} ({kernel})"
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]} ({kernel})"
    return kernel


def memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _source_address(host: str, port: int) -> str:
    """The local address the kernel would use to reach host:port ('' if none)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return ""
    for family, kind, proto, _, address in infos:
        with contextlib.suppress(OSError), socket.socket(family, kind, proto) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    return ""


def ip_address(dispatcher: str) -> str:
    """The address of the card that reaches the dispatcher; the main card when
    the dispatcher is local (a loopback address identifies nothing)."""
    host, _, port = dispatcher.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    address = _source_address(host, int(port) if port.isdigit() else 50051)
    if not address or ipaddress.ip_address(address).is_loopback:
        address = _source_address(*_ROUTE_PROBE) or address
    return address or "127.0.0.1"


def _interface_address(name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
    return socket.inet_ntoa(packed[20:24])


def mac_address(ip: str) -> str:
    """MAC of the card holding `ip` (for Wake-on-LAN); '' when unknown."""
    if sys.platform.startswith("linux"):
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                if _interface_address(name) == ip:
                    mac = Path(f"/sys/class/net/{name}/address").read_text().strip()
                    if mac and mac != "00:00:00:00:00:00":
                        return mac
    node = uuid.getnode()
    if node >> 40 & 1:  # the multicast bit: uuid made a random number up
        return ""
    return ":".join(f"{node >> shift & 0xFF:02x}" for shift in range(40, -1, -8))


def host_facts(name: str, dispatcher: str) -> HostFacts:
    """Everything Register reports about the machine (blocking: DNS, ioctl)."""
    ip = ip_address(dispatcher)
    return HostFacts(
        host_name=name,
        platform=current_platform(),
        os_version=os_version(),
        cpu_cores=os.cpu_count() or 1,
        memory_bytes=memory_bytes(),
        ip_address=ip,
        mac_address=mac_address(ip),
    )


class UsageMeter:
    """Machine CPU and memory use for heartbeats, from /proc on Linux.

    CPU use is measured between two calls (the heartbeat interval), which is
    what the dispatcher shows; elsewhere the load average stands in for it.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = self._cpu_times()

    @staticmethod
    def _cpu_times() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def cpu_percent(self) -> float:
        now = self._cpu_times()
        if now is None:
            with contextlib.suppress(OSError, AttributeError):
                return min(100.0, os.getloadavg()[0] / (os.cpu_count() or 1) * 100.0)
            return 0.0
        last, self._last = self._last, now
        if last is None or now[0] <= last[0]:
            return 0.0
        busy = (now[0] - last[0]) - (now[1] - last[1])
        return max(0.0, min(100.0, 100.0 * busy / (now[0] - last[0])))

    @staticmethod
    def memory_used() -> int:
        values: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    values[key] = int(rest.split()[0]) * 1024
        if len(values) == 2:
            return values["MemTotal"] - values["MemAvailable"]
        return 0
