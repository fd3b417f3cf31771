"""The local client file: where a dispatcher started with `make run` listens.

Kept apart from muster_gateway.connection so that reading it (the agent, the
notificator) does not load every service's generated stubs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def client_config_path() -> Path:
    explicit = os.environ.get("MUSTER_CLIENT_CONFIG", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "muster-dispatcher" / "client.json"


def write_client_config(address: str, path: Path | None = None, **extra: Any) -> Path:
    """Record where a local dispatcher listens (done by `dispatcher run`)."""
    # Private: it holds a password and the enrollment secret.
    return write_private_json(path or client_config_path(), {**extra, "address": address})


def read_client_config() -> dict[str, Any]:
    return read_json_object(client_config_path())


def write_private_json(target: Path, data: dict[str, Any]) -> Path:
    """Write `data` to `target` atomically, mode 0600 from its first byte."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.touch(mode=0o600)
    temporary.chmod(0o600)
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(target)
    return target


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
