"""Rules of the nodes domain, free of SQL and gRPC."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from muster_proto.nodes.v1 import nodes_pb2
from muster_services.core.enums import PLATFORM, EnumMap
from muster_services.core.errors import InvalidArgument

# Proto enums <-> the nodes table's text values.
NODE_STATUS = EnumMap(nodes_pb2.NodeStatus.DESCRIPTOR)
CLIENT_KIND = EnumMap(nodes_pb2.ClientKind.DESCRIPTOR)

MAX_NAME_LENGTH = 255
# Pools one agent may declare for its nodes.
MAX_DECLARED_POOLS = 64
MAX_NOTES_LENGTH = 10_000
MAX_MESSAGE_LENGTH = 10_000
MAX_CODE_LENGTH = 100_000
DEFAULT_CODE_TIMEOUT_SECONDS = 30
MAX_CODE_TIMEOUT_SECONDS = 3600

# What a notificator hears when neither the connection nor the user says.
DEFAULT_PREFERENCES = {
    "job_started": True,
    "chunk_started": False,
    "chunk_failed": True,
    "job_completed": True,
    "job_completed_with_warnings": True,
    "job_completed_with_errors": True,
    "custom_messages": True,
    "own_jobs_only": False,
    "node_offline": True,
}


@dataclass(frozen=True)
class Registration:
    """What an agent instance says about itself when it connects."""

    host_name: str
    instance_number: int
    platform: str
    os_version: str = ""
    cpu_cores: int = 0
    memory_bytes: int = 0
    agent_version: str = ""
    ip_address: str = ""
    mac_address: str = ""
    node_id: int = 0
    pools: list[str] = field(default_factory=list)
    # Instances the agent runs on this host (0: unknown).
    instance_count: int = 0

    def validated(self) -> Registration:
        if not self.host_name.strip():
            raise InvalidArgument("register.host_name: must not be empty")
        if len(self.host_name) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"register.host_name: longer than {MAX_NAME_LENGTH} characters")
        if self.instance_number < 0 or self.instance_number > 1024:
            raise InvalidArgument(
                f"register.instance_number: must be within 0..1024, got {self.instance_number}"
            )
        if self.cpu_cores < 0 or self.memory_bytes < 0:
            raise InvalidArgument("register: cpu_cores and memory_bytes must not be negative")
        if self.platform not in PLATFORM.to_number:
            raise InvalidArgument("register.platform: must be set")
        if len(self.pools) > MAX_DECLARED_POOLS:
            raise InvalidArgument(f"register.pools: more than {MAX_DECLARED_POOLS} pools")
        for pool in self.pools:
            if not pool.strip() or len(pool) > MAX_NAME_LENGTH or not pool.isprintable():
                raise InvalidArgument(
                    f"register.pools: {pool[:40]!r} is not a pool name (1..{MAX_NAME_LENGTH}"
                    " printable characters)"
                )
        return self


def node_name(host_name: str, instance_number: int) -> str:
    """A host's first instance is named after the host; the others get a suffix."""
    return host_name if instance_number == 0 else f"{host_name}-{instance_number}"


def shown_status(stored: str, holds_assignment: bool) -> str:
    """The status a node shows: rendering while it holds a live assignment and
    is online, else its stored status (muster_services/nodes/store.py, SHOWN_STATUS)."""
    return "rendering" if holds_assignment and stored != "offline" else stored


def status_for(rendering: bool, paused: bool) -> str:
    """The status of an online node."""
    if rendering:
        return "rendering"
    return "paused" if paused else "idle"


# A node's values of one template's client configuration items.
MAX_TEMPLATE_PREFERENCES = 100
MAX_TEMPLATE_PREFERENCE_LENGTH = 4096


def template_preferences_after(
    current: Mapping[str, str], values: Mapping[str, str], replace: bool
) -> dict[str, str]:
    """A node's values for a template once `values` are set: merged into
    `current` (an empty value removes its key) or, with `replace`, instead of
    them. Raises InvalidArgument for an empty or unstorable key, a value too
    long, or too many keys."""
    if len(values) > MAX_TEMPLATE_PREFERENCES:
        raise InvalidArgument(f"values: more than {MAX_TEMPLATE_PREFERENCES} keys")
    for key, value in values.items():
        if not key.strip():
            raise InvalidArgument("values: a key is empty")
        if "\x00" in key or "\x00" in value:
            raise InvalidArgument(f"values[{key[:40]!r}]: contains a NUL character")
        if len(key) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"values: key {key[:40]!r}... longer than {MAX_NAME_LENGTH} characters"
            )
        if len(value) > MAX_TEMPLATE_PREFERENCE_LENGTH:
            raise InvalidArgument(
                f"values[{key!r}]: longer than {MAX_TEMPLATE_PREFERENCE_LENGTH} characters"
            )
    result = {} if replace else dict(current)
    for key, value in values.items():
        if value:
            result[key] = value
        else:
            result.pop(key, None)
    if len(result) > MAX_TEMPLATE_PREFERENCES:
        raise InvalidArgument(
            f"values: the node would have {len(result)} keys for the template,"
            f" more than {MAX_TEMPLATE_PREFERENCES}"
        )
    return result
