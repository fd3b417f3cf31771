"""The local client file: where a dispatcher started with `make run` listens.

Kept apart from gateway.connection so that reading it (the agent, the
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
    target = path or client_config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    # Created private: it holds a password and the enrollment secret.
    temporary.touch(mode=0o600)
    temporary.chmod(0o600)
    temporary.write_text(json.dumps({**extra, "address": address}, indent=2) + "\n")
    temporary.replace(target)
    return target


def read_client_config() -> dict[str, Any]:
    try:
        data = json.loads(client_config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
