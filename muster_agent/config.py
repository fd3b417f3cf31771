"""The agent's configuration: command-line options, environment fallbacks and
the optional JSON file (system-event commands, kill grace period).

Precedence for every option: the command line, then the environment
variable, then the default. The dispatcher address falls back to the client
file `dispatcher run` writes, read through the facade's own code so both
programs agree on where it lives.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muster_proto.common.v1 import common_pb2

DEFAULT_KILL_GRACE_SECONDS = 5.0
# How long one template callback (command line, log check...) may take on the node.
DEFAULT_TEMPLATE_CALLBACK_SECONDS = 30.0
DEFAULT_PORT = 50051

# SystemEvent -> the name used in the configuration file and in messages.
SYSTEM_EVENT_NAMES: dict[int, str] = {
    common_pb2.SYSTEM_EVENT_SHUTDOWN: "shutdown",
    common_pb2.SYSTEM_EVENT_REBOOT: "reboot",
    common_pb2.SYSTEM_EVENT_WAKE_UP: "wake_up",
    common_pb2.SYSTEM_EVENT_LOGOFF: "logoff",
}
LOG_LEVELS = ("debug", "info", "warning", "error")
# Pools an agent may declare (the dispatcher's limit).
MAX_POOLS = 64


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass(frozen=True)
class AgentConfig:
    dispatcher: str
    instances: int = 1
    name: str = field(default_factory=socket.gethostname)
    work_dir: Path = field(default_factory=lambda: default_work_dir({}))
    # Event name ("shutdown", "reboot", "wake_up", "logoff") -> argv, run without a shell.
    system_events: Mapping[str, Sequence[str]] = field(default_factory=dict)
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS
    log_level: str = "info"
    # The farm's enrollment secret (docs/security.md); exchanged for a token.
    enrollment_secret: str = ""
    # Pools the agent declares for its nodes.
    pools: tuple[str, ...] = ()
    # Stop when this process is no longer the parent (0: never). Set by
    # `dispatcher run` for its local agents (MUSTER_AGENT_PARENT_PID).
    parent_pid: int = 0
    # This node's values of templates' client configuration items (where an
    # application is installed here...): template id -> item -> value. Over the
    # template's defaults, under an administrator's values (nodes API).
    template_preferences: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    template_callback_seconds: float = DEFAULT_TEMPLATE_CALLBACK_SECONDS


@dataclass(frozen=True)
class FileConfig:
    """What the JSON configuration file holds."""

    system_events: dict[str, list[str]] = field(default_factory=dict)
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS
    template_preferences: dict[int, dict[str, str]] = field(default_factory=dict)
    template_callback_seconds: float = DEFAULT_TEMPLATE_CALLBACK_SECONDS


def default_work_dir(env: Mapping[str, str]) -> Path:
    explicit = env.get("MUSTER_AGENT_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    return Path.home() / ".local" / "share" / "muster-agent"


def default_dispatcher(env: Mapping[str, str]) -> str:
    """$MUSTER_DISPATCHER, else the address in the client file of a local dispatcher."""
    address = env.get("MUSTER_DISPATCHER", "").strip()
    if address:
        return address
    # Imported here: the facade's module loads every service's stubs, which
    # an agent started with an explicit address does not need to hold in memory.
    from muster_gateway.client_config import client_config_path, read_client_config

    address = str(read_client_config().get("address", "")).strip()
    if address:
        return address
    raise ConfigError(
        "no dispatcher address: pass --dispatcher host:port, set MUSTER_DISPATCHER, or start"
        f" a local dispatcher with `make run` (which writes {client_config_path()})"
    )


def normalise_address(address: str) -> str:
    """host[:port] -> host:port (the default port when none is given)."""
    address = address.strip()
    if not address:
        raise ConfigError("the dispatcher address is empty")
    if address.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        return address  # a gRPC target name: passed through untouched
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:  # no port, or a bare [ipv6] literal
        return f"{address}:{DEFAULT_PORT}"
    if not port.isdigit() or not host:
        raise ConfigError(f"dispatcher address {address!r} is not host:port")
    return address


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc


def template_preferences_of(data: Any, where: str) -> dict[int, dict[str, str]]:
    """{"1001": {"BLENDER_PATH": "/opt/blender/blender"}} -> {1001: {...}}."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: template preferences must be an object of template ids")
    result: dict[int, dict[str, str]] = {}
    for key, items in data.items():
        if not str(key).strip().isdigit() or int(key) <= 0:
            raise ConfigError(f"{where}: {key!r} is not a template id")
        if not isinstance(items, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str | int | float | bool)
            for k, v in items.items()
        ):
            raise ConfigError(
                f"{where}: the preferences of template {key} must map names to values"
            )
        result.setdefault(int(key), {}).update(
            {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in items.items()}
        )
    return result


def parse_template_preference(text: str) -> tuple[int, str, str]:
    """`1001:BLENDER_PATH=/opt/blender/blender` -> (1001, "BLENDER_PATH", "/opt/...")."""
    template, colon, rest = text.partition(":")
    name, equals, value = rest.partition("=")
    if not colon or not equals or not template.strip().isdigit() or not name.strip():
        raise ConfigError(
            f"--template-preference {text!r}: expected TEMPLATE_ID:NAME=VALUE"
            " (e.g. 1001:BLENDER_PATH=/opt/blender/blender)"
        )
    if int(template) <= 0:
        raise ConfigError(f"--template-preference {text!r}: the template id must be positive")
    return int(template), name.strip(), value


def read_config_file(path: Path) -> FileConfig:
    """The system-event commands, the kill grace period, the node's template
    preferences and the template callback time limit of a JSON file.

    {"system_events": {"shutdown": ["systemctl", "poweroff"], "reboot": "systemctl reboot"},
     "kill_grace_seconds": 10,
     "template_preferences": {"1001": {"BLENDER_PATH": "/opt/blender/blender"}},
     "template_callback_seconds": 30}
    A command is a list of arguments or one string split like a shell would
    (no shell runs it: no pipes, no variables).
    """
    data = _read_json(path, "configuration file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    unknown = set(data) - {
        "system_events",
        "kill_grace_seconds",
        "template_preferences",
        "template_callback_seconds",
    }
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    events: dict[str, list[str]] = {}
    raw_events = data.get("system_events", {})
    if not isinstance(raw_events, dict):
        raise ConfigError(f"{path}: system_events must be an object")
    for name, command in raw_events.items():
        if name not in SYSTEM_EVENT_NAMES.values():
            raise ConfigError(
                f"{path}: unknown system event {name!r}"
                f" (known: {', '.join(SYSTEM_EVENT_NAMES.values())})"
            )
        if isinstance(command, str):
            argv = shlex.split(command)
        elif isinstance(command, list) and all(isinstance(a, str) for a in command):
            argv = list(command)
        else:
            raise ConfigError(f"{path}: the command of {name} must be a string or a string list")
        if not argv:
            raise ConfigError(f"{path}: the command of {name} is empty")
        events[name] = argv
    grace = data.get("kill_grace_seconds", DEFAULT_KILL_GRACE_SECONDS)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
        raise ConfigError(f"{path}: kill_grace_seconds must be a number >= 0")
    return FileConfig(
        events,
        float(grace),
        template_preferences_of(data.get("template_preferences", {}), str(path)),
        callback_seconds(
            data.get("template_callback_seconds", DEFAULT_TEMPLATE_CALLBACK_SECONDS), str(path)
        ),
    )


def callback_seconds(value: Any, where: str) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConfigError(f"{where}: the template callback time limit must be within 0..3600 s")
    return float(value)


class _PrintAndExit(argparse.Action):
    """An option that prints one of the systemd files and exits, as --help does."""

    def __init__(self, option_strings: Sequence[str], dest: str, text: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)
        self.text = text

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        from muster_agent import unit

        sys.stdout.write(unit.unit_text() if self.text == "unit" else unit.env_text())
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="muster-agent",
        description="Render-node agent: registers with the dispatcher, runs the chunks it"
        " assigns and obeys node commands. Every option falls back to an environment variable.",
    )
    p.add_argument(
        "--print-systemd-unit",
        action=_PrintAndExit,
        text="unit",
        help="print the systemd unit that starts this installation's agent, and exit"
        " (docs/install.md)",
    )
    p.add_argument(
        "--print-systemd-env",
        action=_PrintAndExit,
        text="env",
        help="print the unit's environment file (/etc/muster/agent.env) to edit, and exit",
    )
    p.add_argument(
        "--dispatcher",
        metavar="HOST:PORT",
        help="the dispatcher's address (env MUSTER_DISPATCHER; default: the client file"
        " `make run` writes)",
    )
    p.add_argument(
        "--instances",
        metavar="N",
        help="independent instances (nodes) this agent runs (env MUSTER_AGENT_INSTANCES;"
        " default 1)",
    )
    p.add_argument(
        "--name",
        help="node name; instance N>0 is NAME-N (env MUSTER_AGENT_NAME; default the host name)",
    )
    p.add_argument(
        "--pool",
        action="append",
        metavar="NAME",
        help="a pool this agent's nodes declare; repeat for several (env MUSTER_AGENT_POOLS,"
        " comma-separated)",
    )
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="state file and default working directory of render processes (env"
        " MUSTER_AGENT_DIR; default ~/.local/share/muster-agent)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="JSON file: system-event commands, kill grace period (env MUSTER_AGENT_CONFIG)",
    )
    p.add_argument(
        "--enrollment-secret-file",
        metavar="FILE",
        help="file holding the farm's enrollment secret (env MUSTER_ENROLLMENT_SECRET_FILE,"
        " or the secret itself in MUSTER_ENROLLMENT_SECRET; default: the client file"
        " `make run` writes)",
    )
    p.add_argument(
        "--template-preference",
        action="append",
        metavar="ID:NAME=VALUE",
        help="this node's value of a template's client configuration item, e.g."
        " 1001:BLENDER_PATH=/opt/blender/blender; repeatable (over the template's default,"
        " under an administrator's value set through the nodes API)",
    )
    p.add_argument(
        "--template-preferences",
        metavar="FILE",
        help='JSON file of such values: {"1001": {"BLENDER_PATH": "..."}}'
        " (env MUSTER_AGENT_TEMPLATE_PREFERENCES)",
    )
    p.add_argument(
        "--template-timeout",
        metavar="SECONDS",
        help="time limit of one template callback on this node; one that overruns fails"
        " its chunk (env MUSTER_AGENT_TEMPLATE_TIMEOUT;"
        f" default {DEFAULT_TEMPLATE_CALLBACK_SECONDS:g})",
    )
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="(env MUSTER_AGENT_LOG_LEVEL; default info)",
    )
    return p


def load(argv: Sequence[str] | None, env: Mapping[str, str] | None = None) -> AgentConfig:
    """The configuration from a command line and an environment (raises ConfigError)."""
    args = parser().parse_args(argv)
    env = os.environ if env is None else env

    def pick(value: str | None, name: str) -> str:
        return (value if value is not None else env.get(name, "")).strip()

    raw_instances = pick(args.instances, "MUSTER_AGENT_INSTANCES") or "1"
    try:
        instances = int(raw_instances)
    except ValueError:
        raise ConfigError(f"--instances must be a whole number, got {raw_instances!r}") from None
    if not 1 <= instances <= 64:
        raise ConfigError(f"--instances must be within 1..64, got {instances}")
    log_level = pick(args.log_level, "MUSTER_AGENT_LOG_LEVEL").lower() or "info"
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    work_dir = pick(args.work_dir, "MUSTER_AGENT_DIR")
    config_file = pick(args.config, "MUSTER_AGENT_CONFIG")
    from_file = read_config_file(Path(config_file).expanduser()) if config_file else FileConfig()
    # Layers of this node's own template values: the configuration file, the
    # preferences file, then each --template-preference.
    preferences = {k: dict(v) for k, v in from_file.template_preferences.items()}
    preferences_file = pick(args.template_preferences, "MUSTER_AGENT_TEMPLATE_PREFERENCES")
    if preferences_file:
        path = Path(preferences_file).expanduser()
        for key, values in template_preferences_of(
            _read_json(path, "template preferences file"), str(path)
        ).items():
            preferences.setdefault(key, {}).update(values)
    for text in args.template_preference or ():
        template_id, name, value = parse_template_preference(text)
        preferences.setdefault(template_id, {})[name] = value
    raw_timeout = pick(args.template_timeout, "MUSTER_AGENT_TEMPLATE_TIMEOUT")
    timeout = (
        callback_seconds(raw_timeout, "--template-timeout")
        if raw_timeout
        else from_file.template_callback_seconds
    )
    dispatcher = pick(args.dispatcher, "MUSTER_DISPATCHER") or default_dispatcher(env)
    secret_file = pick(args.enrollment_secret_file, "MUSTER_ENROLLMENT_SECRET_FILE")
    raw_pools = args.pool if args.pool is not None else env.get("MUSTER_AGENT_POOLS", "").split(",")
    pools = tuple(dict.fromkeys(p.strip() for p in raw_pools if p.strip()))
    if len(pools) > MAX_POOLS or any(len(p) > 255 or not p.isprintable() for p in pools):
        raise ConfigError(f"--pool: at most {MAX_POOLS} names of 1..255 printable characters")
    return AgentConfig(
        dispatcher=normalise_address(dispatcher),
        instances=instances,
        name=pick(args.name, "MUSTER_AGENT_NAME") or socket.gethostname(),
        work_dir=Path(work_dir).expanduser() if work_dir else default_work_dir(env),
        system_events=from_file.system_events,
        kill_grace_seconds=from_file.kill_grace_seconds,
        log_level=log_level,
        enrollment_secret=enrollment_secret(secret_file, env),
        pools=pools,
        parent_pid=parent_pid(env),
        template_preferences=preferences,
        template_callback_seconds=timeout,
    )


def parent_pid(env: Mapping[str, str]) -> int:
    raw = env.get("MUSTER_AGENT_PARENT_PID", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ConfigError(f"MUSTER_AGENT_PARENT_PID must be a process id, got {raw!r}")
    return int(raw)


def enrollment_secret(secret_file: str, env: Mapping[str, str]) -> str:
    """The secret from its file, else MUSTER_ENROLLMENT_SECRET, else the client file's."""
    if secret_file:
        try:
            return Path(secret_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"enrollment secret file {secret_file!r}: {exc.strerror}") from None
    from muster_gateway.client_config import read_client_config

    return env.get("MUSTER_ENROLLMENT_SECRET", "").strip() or str(
        read_client_config().get("enrollment_secret", "")
    )
