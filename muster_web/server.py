"""Serving the dashboard: `muster-web` (its own process, as in Kubernetes) or
a thread of `dispatcher run` (`WebServer`)."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
from collections.abc import Sequence

import uvicorn

from muster_gateway.connection import NotConfigured
from muster_gateway.tls import TLSError
from muster_web.app import create_app
from muster_web.settings import WebSettings, WebSettingsError, split_listen
from muster_web.upstream import Upstream

_LOG = logging.getLogger("muster_web")
# On SIGTERM (or the dispatcher stopping): requests get this long to finish; live
# streams never do, so they are closed then (browsers reconnect elsewhere).
GRACE_SECONDS = 3


def bind(listen: str) -> socket.socket:
    """A listening socket on host:port (port 0: a free one)."""
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, settings: WebSettings) -> str:
    if settings.public_url:
        return settings.public_url + "/"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class WebServer:
    """The dashboard in a thread, on a socket bound at once (so its address is
    known before it starts serving)."""

    def __init__(self, settings: WebSettings, dispatcher_address: str = "") -> None:
        self.settings = settings
        self.socket = bind(settings.listen)
        self.url = url_of(self.socket, settings)
        self.app = create_app(settings, Upstream(dispatcher_address))
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)

    def _serve(self) -> None:
        self._server.run(sockets=[self.socket])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self.socket.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="muster-web",
        description="The render farm's web dashboard (docs/dashboard.md).",
    )
    parser.add_argument("--listen", help="host:port to serve on (default: $MUSTER_WEB_LISTEN)")
    parser.add_argument(
        "--dispatcher", default="", help="host:port of the services (default: $MUSTER_DISPATCHER)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        settings = WebSettings.from_env()
        if args.listen:
            split_listen(args.listen)
            settings = WebSettings(
                args.listen, settings.cookie_secure, settings.public_url, settings.enabled
            )
        upstream = Upstream(args.dispatcher)
        upstream.address("jobs")
        sock = bind(settings.listen)
    except (WebSettingsError, NotConfigured, TLSError, OSError) as exc:
        print(f"muster-web: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, upstream)
    sys.stdout.write(f"dashboard at {url_of(sock, settings)}\n")
    sys.stdout.flush()
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
