"""The dashboard's settings (docs/configuration.md, docs/dashboard.md).

- `MUSTER_WEB_LISTEN`: host:port the dashboard listens on (default
  127.0.0.1:50080; port 0 picks a free one).
- `MUSTER_WEB_COOKIE_SECURE`: 1 marks the session cookie Secure (browsers
  send it over HTTPS only); on by default when `MUSTER_WEB_PUBLIC_URL` starts
  with https://.
- `MUSTER_WEB_PUBLIC_URL`: the address users open (behind a proxy or an
  ingress); only used to print and to default the cookie's Secure flag.
- `MUSTER_WEB`: 0 keeps `dispatcher run` from starting the dashboard.
The services' address and TLS come from muster_gateway/connection.py and
muster_gateway/tls.py, as for every client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:50080"


class WebSettingsError(ValueError):
    """A dashboard setting that cannot be used."""


def split_listen(listen: str) -> tuple[str, int]:
    """("host", port) of a host:port; IPv6 hosts in brackets."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise WebSettingsError(f"MUSTER_WEB_LISTEN: not a host:port: {listen!r}")
    return host.strip("[]"), int(port)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise WebSettingsError(f"{name}: expected 1 or 0, got {raw!r}")


@dataclass(frozen=True)
class WebSettings:
    listen: str = DEFAULT_LISTEN
    cookie_secure: bool = False
    public_url: str = ""
    enabled: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env
        listen = env.get("MUSTER_WEB_LISTEN", "").strip() or DEFAULT_LISTEN
        split_listen(listen)
        public_url = env.get("MUSTER_WEB_PUBLIC_URL", "").strip().rstrip("/")
        return cls(
            listen=listen,
            cookie_secure=_flag(env, "MUSTER_WEB_COOKIE_SECURE", public_url.startswith("https://")),
            public_url=public_url,
            enabled=_flag(env, "MUSTER_WEB", True),
        )
