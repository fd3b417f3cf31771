"""`dispatcher`: run the whole dispatcher, one service, or its migrations."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from services.core import logs, migrate
from services.core.database import DatabaseRuntime
from services.core.settings import Settings, SettingsError

_LOG = logging.getLogger("dispatcher")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Render farm dispatcher (Muster-compatible MDispatcherAPI over gRPC).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run jobs, nodes and admin in one process (embedded Postgres by default)"
    )
    run.add_argument("--listen", help="host:port to listen on (default: $MUSTER_LISTEN)")
    run.add_argument(
        "--agents",
        type=int,
        default=None,
        help="local render-node agent instances to start beside the dispatcher"
        " (default: $MUSTER_LOCAL_AGENTS, else 2; 0 starts none)",
    )

    serve = sub.add_parser("serve", help="run one or more services (as in Kubernetes)")
    serve.add_argument("services", nargs="+", choices=["jobs", "nodes", "admin"])
    serve.add_argument("--listen", help="host:port to listen on (default: $MUSTER_LISTEN)")
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the schema at start"
    )

    status = sub.add_parser("status", help="show the health of every service at an address")
    status.add_argument(
        "--address", default=None, help="host:port of a dispatcher (default: $MUSTER_LISTEN)"
    )
    status.add_argument("--timeout", type=float, default=5.0, help="seconds per check")

    mig = sub.add_parser("migrate", help="upgrade (default), downgrade or show the schema version")
    mig.add_argument(
        "action", nargs="?", default="upgrade", choices=["upgrade", "downgrade", "current"]
    )
    mig.add_argument("revision", nargs="?", help="target revision (head / base by default)")
    return parser


def _ready(
    names: Sequence[str],
    write_client_file: bool,
    agents: int = 0,
    data_dir: Path | None = None,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Callable[[str, int], None]:
    def announce(host: str, port: int) -> None:
        if write_client_file:
            # Lets `import MDispatcherAPI` on this machine find the dispatcher.
            from gateway.client_config import write_client_config

            path = write_client_config(f"{host}:{port}")
            _LOG.info("facade client file written to %s", path)
        if agents > 0 and data_dir is not None and started is not None:
            started.append(_start_local_agents(f"{host}:{port}", agents, data_dir))
        # The one line scripts and tests wait for; keep its shape stable.
        print(f"dispatcher ready: {' '.join(names)} at {host}:{port}", flush=True)

    return announce


def _start_local_agents(address: str, instances: int, data_dir: Path) -> subprocess.Popen[bytes]:
    """One `muster-agent` process with `instances` render slots (dev stack)."""
    work_dir = data_dir / "agent"
    work_dir.mkdir(parents=True, exist_ok=True)
    _LOG.info("starting %d local agent instance(s); log in %s", instances, work_dir / "agent.log")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--dispatcher",
            address,
            "--instances",
            str(instances),
            "--name",
            f"{socket.gethostname()}-local",
            "--work-dir",
            str(work_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work_dir / "agent.log").open("ab"),
    )


def _status(address: str, timeout: float) -> int:
    """Print a table of the services a dispatcher reflects and their health."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            names = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
        except Exception as exc:  # unreachable, or reflection refused
            print(f"dispatcher at {address}: unreachable ({type(exc).__name__})", file=sys.stderr)
            return 1
        health = health_pb2_grpc.HealthStub(channel)
        rows = []
        for name in names:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=timeout)
                state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                state = "-" if exc.code() == grpc.StatusCode.NOT_FOUND else exc.code().name
            rows.append((name, state))
    width = max(len("service"), *(len(n) for n, _ in rows))
    print(f"dispatcher at {address}")
    print(f"{'service':<{width}}  health")
    print(f"{'-' * width}  {'-' * 11}")
    for name, state in rows:
        print(f"{name:<{width}}  {state}")
    return 0 if all(s in ("SERVING", "-") for _, s in rows) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "listen", None):
        settings = replace(settings, listen=args.listen)
    logs.configure(settings.log_level, settings.log_format)

    from services import app

    if args.command == "status":
        return _status(args.address or settings.listen, args.timeout)

    if args.command == "migrate":
        runtime = DatabaseRuntime(settings)
        try:
            url = runtime.url()
            if args.action == "upgrade":
                migrate.upgrade(url, args.revision or "head")
            elif args.action == "downgrade":
                migrate.downgrade(url, args.revision or "base")
            print(
                f"schema at {migrate.current_revision(url) or 'base'}"
                f" (head {migrate.head_revision()})"
            )
        finally:
            runtime.stop()
        return 0

    running = args.command == "run"
    names = list(app.SERVICE_NAMES) if running else list(dict.fromkeys(args.services))
    agents = 0
    if running:
        agents = args.agents if args.agents is not None else _local_agents()
        if agents < 0:
            print("dispatcher: --agents must be >= 0", file=sys.stderr)
            return 2
    started: list[subprocess.Popen[bytes]] = []
    try:
        app.serve(
            names,
            settings,
            _ready(names, running, agents, settings.data_dir, started),
            run_migrations=not getattr(args, "no_migrate", False),
        )
    except OSError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def _local_agents() -> int:
    raw = os.environ.get("MUSTER_LOCAL_AGENTS", "").strip()
    try:
        return int(raw) if raw else 2
    except ValueError:
        return 2


if __name__ == "__main__":
    sys.exit(main())
