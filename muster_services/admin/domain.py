"""Rules of the admin domain: validation, the configuration and its defaults,
the last-administrator rule, log naming, statistics. No SQL, no gRPC, no I/O.

Every refusal is an InvalidArgument (or NotFound / FailedPrecondition) whose
message starts with the field it is about, so a caller can fix its request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from muster_services.core import topics as core_topics
from muster_services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from muster_services.nodes import topics as nodes_topics

# --- names -------------------------------------------------------------------------------

# Local user names: what a login prompt and a log line can carry unquoted.
USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Directory users are listed as @directory@<name> (Muster's userGetList).
DIRECTORY_PREFIX = "@directory@"
MAX_NAME = 255
MAX_TEXT = 4096
MAX_PRIORITY = 65535
ROLES = ("administrator", "user")
PLATFORM_PATH_FIELDS = ("windows_path", "linux_path", "macos_path")


def check_name(field_name: str, value: str) -> str:
    """A group, pool or repository name: 1..255 printable characters, trimmed."""
    if not value or not value.strip():
        raise InvalidArgument(f"{field_name}: must not be empty")
    if value != value.strip():
        raise InvalidArgument(f"{field_name}: must not start or end with spaces, got {value!r}")
    if len(value) > MAX_NAME:
        raise InvalidArgument(f"{field_name}: at most {MAX_NAME} characters, got {len(value)}")
    if not value.isprintable():
        raise InvalidArgument(f"{field_name}: must not contain control characters")
    return value


def check_text(field_name: str, value: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{field_name}: at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidArgument(f"{field_name}: must not contain NUL")
    return value


def user_name(name: str, field_name: str = "user.name") -> str:
    """A local user name; a "@directory@" prefix is refused (directory users
    live in the directory)."""
    if not name:
        raise InvalidArgument(f"{field_name}: must not be empty")
    if not USER_NAME.fullmatch(name):
        raise InvalidArgument(
            f"{field_name}: 1-64 letters, digits, '.', '_' or '-', got {name[:80]!r}"
        )
    return name


def without_directory_prefix(name: str) -> str:
    """The name a GetUser request means: "@directory@alice" is "alice"."""
    return name.removeprefix(DIRECTORY_PREFIX)


def unique_names(field_name: str, names: Sequence[str]) -> list[str]:
    """A list of names without blanks or duplicates, in the caller's order."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        check_name(f"{field_name}[{index}]", name)
        if name in seen:
            raise InvalidArgument(f"{field_name}[{index}]: {name!r} is listed twice")
        seen.add(name)
    return list(names)


# --- users, groups, pools, repositories ------------------------------------------------------

NOTIFICATION_PREFERENCES = (
    "job_started",
    "chunk_started",
    "chunk_failed",
    "job_completed",
    "job_completed_with_warnings",
    "job_completed_with_errors",
    "custom_messages",
    "own_jobs_only",
    "email",
    "node_offline",
)


@dataclass(frozen=True)
class UserSpec:
    """A user as a request describes it (password in clear, never stored)."""

    name: str
    role: str
    password: str = ""
    groups: tuple[str, ...] = ()
    enabled: bool = True
    email: str = ""
    display_name: str = ""
    max_job_priority: int = 0
    notification_preferences: Mapping[str, bool] = field(default_factory=dict)


USER_FIELDS = (
    "password",
    "role",
    "groups",
    "enabled",
    "email",
    "display_name",
    "max_job_priority",
    "notification_preferences",
)


def check_user(spec: UserSpec) -> UserSpec:
    user_name(spec.name)
    if spec.role not in ROLES:
        raise InvalidArgument(f"user.role: must be one of {', '.join(ROLES)}, got {spec.role!r}")
    unique_names("user.groups", spec.groups)
    check_text("user.email", spec.email, MAX_NAME)
    if spec.email and not re.fullmatch(r"[^@\s]+@[^@\s]+", spec.email):
        raise InvalidArgument(f"user.email: not an e-mail address: {spec.email[:80]!r}")
    check_text("user.display_name", spec.display_name, MAX_NAME)
    check_text("user.password", spec.password, 1024)
    if not 0 <= spec.max_job_priority <= MAX_PRIORITY:
        raise InvalidArgument(
            f"user.max_job_priority: must be within 0..{MAX_PRIORITY}, got {spec.max_job_priority}"
        )
    unknown = set(spec.notification_preferences) - set(NOTIFICATION_PREFERENCES)
    if unknown:
        raise InvalidArgument(f"user.notification_preferences: unknown {sorted(unknown)}")
    return spec


def ensure_an_administrator_remains(
    enabled_administrators: Iterable[str], name: str, role: str | None, enabled: bool | None
) -> None:
    """Refuse a change that leaves no enabled administrator.

    `role`/`enabled` are the user's values after the change; None means the
    user is removed.
    """
    admins = set(enabled_administrators)
    if name not in admins:
        return  # the user is not one of them: nothing to lose
    stays = role == "administrator" and bool(enabled)
    if not stays and admins == {name}:
        raise FailedPrecondition(
            f"user {name!r}: is the last enabled administrator; add or enable another first"
        )


@dataclass(frozen=True)
class GroupSpec:
    name: str
    description: str = ""
    members: tuple[str, ...] = ()


def check_group(spec: GroupSpec) -> GroupSpec:
    check_name("group.name", spec.name)
    check_text("group.description", spec.description)
    for index, member in enumerate(spec.members):
        user_name(member, f"group.members[{index}]")
    unique_names("group.members", spec.members)
    return spec


@dataclass(frozen=True)
class PoolSpec:
    name: str
    description: str = ""
    node_names: tuple[str, ...] = ()


def check_pool(spec: PoolSpec) -> PoolSpec:
    check_name("pool.name", spec.name)
    check_text("pool.description", spec.description)
    unique_names("pool.node_names", spec.node_names)
    for index, node in enumerate(spec.node_names):
        if any(c.isspace() for c in node):
            raise InvalidArgument(f"pool.node_names[{index}]: must not contain spaces")
    return spec


@dataclass(frozen=True)
class RepositorySpec:
    name: str
    windows_path: str = ""
    linux_path: str = ""
    macos_path: str = ""
    description: str = ""


def check_repository(spec: RepositorySpec) -> RepositorySpec:
    check_name("repository.name", spec.name)
    check_text("repository.description", spec.description)
    paths = [getattr(spec, f) for f in PLATFORM_PATH_FIELDS]
    if not any(paths):
        raise InvalidArgument(
            "repository: needs at least one of windows_path, linux_path, macos_path"
        )
    for name, value in zip(PLATFORM_PATH_FIELDS, paths, strict=True):
        check_text(f"repository.{name}", value, 1024)
        if value and value != value.strip():
            raise InvalidArgument(f"repository.{name}: must not start or end with spaces")
        if not value.isprintable():
            raise InvalidArgument(f"repository.{name}: must not contain control characters")
        if ".." in re.split(r"[\\/]", value):
            raise InvalidArgument(
                f"repository.{name}: must not contain '..' (a repository names its folder"
                f" directly), got {value[:80]!r}"
            )
    if spec.linux_path and not spec.linux_path.startswith("/"):
        raise InvalidArgument(f"repository.linux_path: must be absolute, got {spec.linux_path!r}")
    if spec.macos_path and not spec.macos_path.startswith("/"):
        raise InvalidArgument(f"repository.macos_path: must be absolute, got {spec.macos_path!r}")
    windows = spec.windows_path
    if windows and not (re.match(r"[A-Za-z]:([\\/]|$)", windows) or windows.startswith("\\\\")):
        raise InvalidArgument(
            f"repository.windows_path: must be a drive (P:\\...) or UNC (\\\\server\\...) path,"
            f" got {windows!r}"
        )
    return spec


# --- dispatcher configuration --------------------------------------------------------------

INSTANCE_IDENTITIES = ("ip_address", "host_name")
COMPLETED_JOB_POLICIES = ("keep", "delete", "archive")
# Who reads render logs: anyone logged in, the job's owner (and
# administrators), administrators only.
RENDER_LOG_READERS = ("everyone", "owner", "admins")
# A scan probes every address of its ranges: keep one range to a /16.
MAX_SCAN_ADDRESSES = 65536


@dataclass(frozen=True)
class EmailConfig:
    enabled: bool = False
    smtp_host: str = ""
    smtp_port: int = 25
    use_tls: bool = False
    smtp_user: str = ""
    sender_address: str = ""


@dataclass(frozen=True)
class DispatcherConfig:
    """The dispatcher configuration without secrets; defaults documented in
    docs/configuration.md ("Dispatcher configuration")."""

    start_engine_on_startup: bool = True
    remove_orphaned_instances: bool = True
    instance_identity: str = "host_name"
    requeue_chunks_on_disconnection: bool = True
    max_chunk_requeues: int = 5
    chunk_timeout_seconds: int = 0
    abort_process_on_chunk_timeout: bool = True
    substitution_paths_case_sensitive: bool = False
    max_task_threads: int = 8
    heartbeat_interval_seconds: int = 10
    node_lost_timeout_seconds: int = 60
    log_retention_days: int = 30
    job_exclusion_failures: int = 3
    job_exclusion_forgive_seconds: int = 18000
    completed_job_policy: str = "keep"
    completed_job_retention_hours: int = 168
    statistics_sample_interval_seconds: int = 60
    statistics_retention_days: int = 90
    history_retention_days: int = 365
    event_retention_hours: int = 168
    render_logs_readable_by: str = "everyone"
    render_log_cap_bytes: int = 64 * 1024 * 1024
    default_job_priority: int = 50
    hook_timeout_seconds: int = 10
    idle_hook_interval_seconds: int = 60
    network_scan_ranges: tuple[str, ...] = ()
    email: EmailConfig = EmailConfig()


# Integer options: (minimum, maximum).
_RANGES: dict[str, tuple[int, int]] = {
    "max_chunk_requeues": (0, 1000),
    "chunk_timeout_seconds": (0, 30 * 86400),
    "max_task_threads": (1, 256),
    "heartbeat_interval_seconds": (1, 3600),
    "node_lost_timeout_seconds": (2, 86400),
    "log_retention_days": (1, 3650),
    "job_exclusion_failures": (0, 1000),
    "job_exclusion_forgive_seconds": (0, 30 * 86400),
    "completed_job_retention_hours": (1, 10 * 8760),
    "statistics_sample_interval_seconds": (5, 86400),
    "statistics_retention_days": (0, 3650),
    "history_retention_days": (0, 3650),
    "event_retention_hours": (1, 8760),
    "default_job_priority": (0, MAX_PRIORITY),
    "hook_timeout_seconds": (1, 3600),
    "idle_hook_interval_seconds": (1, 86400),
    "email.smtp_port": (1, 65535),
    "render_log_cap_bytes": (1024, 2**40),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "instance_identity": INSTANCE_IDENTITIES,
    "completed_job_policy": COMPLETED_JOB_POLICIES,
    "render_logs_readable_by": RENDER_LOG_READERS,
}
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(DispatcherConfig))
EMAIL_FIELDS = tuple(f.name for f in dataclasses.fields(EmailConfig))
# Write-only: kept apart from the configuration, never returned.
CONFIG_SECRETS = ("email.smtp_password",)


def check_configuration(config: DispatcherConfig) -> DispatcherConfig:
    """Every field in range; cross-field rules; refusals name the field."""
    for name, (low, high) in _RANGES.items():
        value = _get(config, name)
        if not low <= value <= high:
            raise InvalidArgument(
                f"configuration.{name}: must be within {low}..{high}, got {value}"
            )
    for name, choices in _CHOICES.items():
        value = _get(config, name)
        if value not in choices:
            raise InvalidArgument(
                f"configuration.{name}: must be one of {', '.join(choices)}, got {value!r}"
            )
    if config.node_lost_timeout_seconds < 2 * config.heartbeat_interval_seconds:
        raise InvalidArgument(
            "configuration.node_lost_timeout_seconds: must be at least twice"
            f" heartbeat_interval_seconds ({config.heartbeat_interval_seconds}),"
            f" got {config.node_lost_timeout_seconds}"
        )
    for index, cidr in enumerate(config.network_scan_ranges):
        where = f"configuration.network_scan_ranges[{index}]"
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidArgument(f"{where}: not a CIDR range: {cidr[:80]!r}") from None
        if network.num_addresses > MAX_SCAN_ADDRESSES:
            raise InvalidArgument(
                f"{where}: at most {MAX_SCAN_ADDRESSES} addresses per range, {cidr} has"
                f" {network.num_addresses}"
            )
    email = config.email
    check_text("configuration.email.smtp_host", email.smtp_host, MAX_NAME)
    check_text("configuration.email.smtp_user", email.smtp_user, MAX_NAME)
    check_text("configuration.email.sender_address", email.sender_address, MAX_NAME)
    if email.enabled and not email.smtp_host:
        raise InvalidArgument("configuration.email.smtp_host: needed when e-mail is enabled")
    if email.enabled and "@" not in email.sender_address:
        raise InvalidArgument(
            "configuration.email.sender_address: an e-mail address is needed when e-mail"
            f" is enabled, got {email.sender_address!r}"
        )
    return config


def _get(config: DispatcherConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def apply_changes(
    current: Any, changes: Mapping[str, Any], fields: Sequence[str], what: str
) -> Any:
    """`current` (a frozen config dataclass) with `changes` ({"field": value} or
    {"email.smtp_host": value}) applied; an unknown field is INVALID_ARGUMENT."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in changes.items():
        head, _, rest = path.partition(".")
        if head not in fields:
            raise InvalidArgument(f"update_mask: {what} has no field {path!r}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, values in nested.items():
        inner = top.get(head, getattr(current, head))
        inner_fields = [f.name for f in dataclasses.fields(inner)]
        unknown = [k for k in values if k not in inner_fields]
        if unknown:
            raise InvalidArgument(f"update_mask: {what} has no field {head}.{unknown[0]!r}")
        top[head] = dataclasses.replace(inner, **values)
    return dataclasses.replace(current, **top)


def configuration_to_json(config: Any) -> dict[str, Any]:
    """A config dataclass as stored JSON (tuples become lists)."""
    data: dict[str, Any] = _jsonable(dataclasses.asdict(config))
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def configuration_from_json(data: Mapping[str, Any]) -> DispatcherConfig:
    """The stored JSON over the defaults: fields added later get their default,
    fields a newer version removed are ignored."""
    known = {k: v for k, v in data.items() if k in CONFIG_FIELDS and k != "email"}
    if "network_scan_ranges" in known:
        known["network_scan_ranges"] = tuple(known["network_scan_ranges"])
    email = {k: v for k, v in dict(data.get("email") or {}).items() if k in EMAIL_FIELDS}
    return DispatcherConfig(**known, email=EmailConfig(**email))


# --- LDAP configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class LdapGroupMapping:
    ldap_group_dn: str
    group: str = ""
    role: str = "user"


@dataclass(frozen=True)
class LdapConfig:
    enabled: bool = False
    server_uri: str = ""
    use_tls: bool = False
    bind_dn: str = ""
    user_search_base: str = ""
    user_search_filter: str = "(uid={user})"
    user_name_attribute: str = "uid"
    email_attribute: str = "mail"
    group_mappings: tuple[LdapGroupMapping, ...] = ()


LDAP_FIELDS = tuple(f.name for f in dataclasses.fields(LdapConfig))
LDAP_URI = re.compile(r"ldaps?://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?/?")


def check_ldap_configuration(config: LdapConfig) -> LdapConfig:
    if config.server_uri and not LDAP_URI.fullmatch(config.server_uri):
        raise InvalidArgument(
            "ldap_configuration.server_uri: must be ldap://host[:port] or ldaps://host[:port],"
            f" got {config.server_uri[:80]!r}"
        )
    if config.enabled:
        for name in ("server_uri", "user_search_base", "user_name_attribute"):
            if not getattr(config, name):
                raise InvalidArgument(f"ldap_configuration.{name}: needed when LDAP is enabled")
    for name in ("bind_dn", "user_search_base", "user_name_attribute", "email_attribute"):
        check_text(f"ldap_configuration.{name}", getattr(config, name), 1024)
    search = config.user_search_filter
    if "{user}" not in search:
        raise InvalidArgument(
            f"ldap_configuration.user_search_filter: must contain {{user}}, got {search[:80]!r}"
        )
    if not _balanced_filter(search):
        raise InvalidArgument(
            "ldap_configuration.user_search_filter: not an LDAP filter (unbalanced"
            f" parentheses): {search[:80]!r}"
        )
    for index, mapping in enumerate(config.group_mappings):
        where = f"ldap_configuration.group_mappings[{index}]"
        if not mapping.ldap_group_dn:
            raise InvalidArgument(f"{where}.ldap_group_dn: must not be empty")
        if mapping.role not in ROLES:
            raise InvalidArgument(f"{where}.role: must be one of {', '.join(ROLES)}")
        if mapping.group:
            check_name(f"{where}.group", mapping.group)
    return config


def _balanced_filter(search: str) -> bool:
    if not (search.startswith("(") and search.endswith(")")):
        return False
    depth = 0
    for char in search:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def ldap_configuration_from_json(data: Mapping[str, Any]) -> LdapConfig:
    known = {k: v for k, v in data.items() if k in LDAP_FIELDS and k != "group_mappings"}
    mappings = tuple(LdapGroupMapping(**m) for m in data.get("group_mappings") or ())
    return LdapConfig(**known, group_mappings=mappings)


def directory_role(config: LdapConfig, member_of: Iterable[str]) -> tuple[str, list[str]]:
    """A directory user's role and dispatcher groups from their directory
    groups: the highest role of every matching mapping wins."""
    dns = {dn.casefold() for dn in member_of}
    role = "user"
    groups: list[str] = []
    for mapping in config.group_mappings:
        if mapping.ldap_group_dn.casefold() in dns:
            if mapping.role == "administrator":
                role = "administrator"
            if mapping.group and mapping.group not in groups:
                groups.append(mapping.group)
    return role, groups


# --- logs ----------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_LOG_MESSAGE = 64 * 1024
# Per-day log "files": <kind>-YYYY-MM-DD.log, the UTC day of the lines.
LOG_KINDS = {"action": "actions", "activity": "activity"}
_LOG_NAME = re.compile(r"(actions|activity)-(\d{4}-\d{2}-\d{2})\.log")


def check_log_message(message: str) -> str:
    if not message.strip():
        raise InvalidArgument("message: must not be empty")
    return check_text("message", message, MAX_LOG_MESSAGE)


def log_file_name(kind: str, day: date) -> str:
    return f"{LOG_KINDS[kind]}-{day.isoformat()}.log"


def log_file_day(kind: str, name: str) -> date:
    """The day a log file name stands for.

    A name that could reach outside the list (a path, "..", NUL) is
    INVALID_ARGUMENT; a clean name that is not one of this kind's names is
    NOT_FOUND, as is a day without lines (checked by the caller).
    """
    if not name:
        raise InvalidArgument("name: must not be empty")
    if any(c in name for c in "/\\\x00") or ".." in name or name.startswith("~"):
        raise InvalidArgument(f"name: must be a log file name from the list, got {name[:80]!r}")
    match = _LOG_NAME.fullmatch(name)
    if match is None or match.group(1) != LOG_KINDS[kind]:
        raise NotFound(f"name: no {kind} log named {name[:80]!r}")
    try:
        return date.fromisoformat(match.group(2))
    except ValueError:
        raise NotFound(f"name: no {kind} log named {name!r}") from None


# Topics of what the dispatcher did by itself or on its nodes: the activity log
# (the chunk.* and job.* families of muster_services/jobs/topics.py, node.* of
# muster_services/nodes/topics.py).
ACTIVITY_PREFIXES = ("chunk.", "node.", "job.")
# Actors that are the dispatcher's own automatic work, not an API caller:
# their events go to the activity log only. The scheduler, and the nodes
# service's own token, which only relays its agents' results and render logs
# and releases a lost node's chunks (muster_services/nodes/relay.py). Hook
# scripts call as `service:dispatcher`: their calls stay actions.
AUTOMATIC_ACTORS = ("scheduler", "service:nodes")
# Topics of the render loop's course, whoever's call they follow: a node idle
# again once its chunk ended (one per chunk). Activity log only.
AUTOMATIC_TOPICS = (nodes_topics.NODE_IDLE,)
AUDIT_TOPICS = (core_topics.CALL_DENIED, core_topics.CALL_FAILED)
# Topics that carry data, not a change anyone made (render output forwarded to
# consoles): never an action-log line.
STREAM_TOPICS = (nodes_topics.LOG_CHUNK,)
# Topics that are never an action-log line, whoever's event.
_NEVER_ACTIONS = frozenset(STREAM_TOPICS + AUTOMATIC_TOPICS)
# Payload keys that name what an event acted on, in order of preference.
_TARGET_KEYS = (
    ("job_id", "job"),
    ("node_id", "node"),
    ("connection_id", "client"),
    ("user", "user"),
    ("group", "group"),
    ("pool", "pool"),
    ("repository", "repository"),
)


@dataclass(frozen=True)
class ActionEntry:
    user_name: str
    peer: str
    action: str
    target: str
    detail: dict[str, Any]


def action_entry(topic: str, payload: Mapping[str, Any]) -> ActionEntry | None:
    """The action-log line of an event, or None for automatic work."""
    actor = str(payload.get("actor", ""))
    if not actor or actor in AUTOMATIC_ACTORS or topic in _NEVER_ACTIONS:
        return None
    detail = {k: v for k, v in payload.items() if k not in ("actor", "peer")}
    return ActionEntry(
        user_name=actor,
        peer=str(payload.get("peer", "")),
        # A refused or failed call names the RPC it was (muster_services/core/audit.py).
        action=str(payload["method"]) if topic in AUDIT_TOPICS else topic,
        target=event_target(payload),
        detail=detail,
    )


def event_target(payload: Mapping[str, Any]) -> str:
    for key, kind in _TARGET_KEYS:
        if payload.get(key) not in (None, ""):
            return f"{kind}:{payload[key]}"
    return ""


@dataclass(frozen=True)
class ActivityEntry:
    category: str
    message: str
    job_id: int | None
    node_id: int | None
    detail: dict[str, Any]


def activity_entry(topic: str, payload: Mapping[str, Any]) -> ActivityEntry | None:
    """The activity-log line of a dispatch, chunk or node event."""
    if not topic.startswith(ACTIVITY_PREFIXES):
        return None
    detail = dict(payload)
    actor = str(payload.get("actor", ""))
    described = " ".join(f"{k}={v}" for k, v in sorted(detail.items()) if k != "actor")
    message = f"{topic} {described}".strip() + (f" by {actor}" if actor else "")
    return ActivityEntry(
        category=topic,
        message=message,
        job_id=_int_or_none(payload.get("job_id")),
        node_id=_int_or_none(payload.get("node_id")),
        detail=detail,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# --- time ranges and statistics -------------------------------------------------------------


def check_time_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise InvalidArgument(
            f"time_range: start_time {start.isoformat()} is after end_time {end.isoformat()}"
        )


def statistics_counters(
    nodes_by_status: Mapping[str, int],
    jobs_by_status: Mapping[str, int],
    chunks_by_status: Mapping[str, int],
    since_reset: Mapping[str, int],
) -> dict[str, int]:
    """One statistics sample's counters (the StatisticsSample fields, plus the
    per-status detail and the live counters since the last reset)."""
    counters = {
        "nodes_total": sum(nodes_by_status.values()),
        "nodes_idle": nodes_by_status.get("idle", 0),
        "nodes_rendering": nodes_by_status.get("rendering", 0),
        "nodes_paused": nodes_by_status.get("paused", 0),
        "nodes_offline": nodes_by_status.get("offline", 0),
        "jobs_queued": jobs_by_status.get("queued", 0)
        + jobs_by_status.get("waiting_dependencies", 0),
        "jobs_running": jobs_by_status.get("running", 0),
        "chunks_queued": chunks_by_status.get("queued", 0),
        "chunks_running": chunks_by_status.get("running", 0) + chunks_by_status.get("assigned", 0),
    }
    counters.update(
        {f"jobs_{k}": v for k, v in jobs_by_status.items() if f"jobs_{k}" not in counters}
    )
    counters.update(
        {f"chunks_{k}": v for k, v in chunks_by_status.items() if f"chunks_{k}" not in counters}
    )
    counters.update({f"since_reset_{k}": v for k, v in since_reset.items()})
    return counters


def sample_due(last: datetime | None, now: datetime, interval_seconds: int) -> bool:
    return last is None or (now - last).total_seconds() >= interval_seconds
