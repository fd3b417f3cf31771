"""`dispatcher`: run the whole dispatcher, one service, or its migrations."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from muster_services.core import logs, migrate
from muster_services.core.database import Database, DatabaseRuntime
from muster_services.core.settings import Settings, SettingsError
from muster_services.devstack import Supervisor, local_agents, local_dashboard

if TYPE_CHECKING:
    from muster_web.server import WebServer

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
        "--metrics-listen",
        help="host:port of the Prometheus /metrics endpoint (default: $MUSTER_METRICS_LISTEN,"
        f" else {DEV_METRICS_PORT} on the gRPC host; 'off': none)",
    )
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
        "--metrics-listen",
        help="host:port of the Prometheus /metrics endpoint (default: $MUSTER_METRICS_LISTEN;"
        " unset: none)",
    )
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the schema at start"
    )

    reset = sub.add_parser(
        "reset-password",
        help="give a user a new random password (printed; for a lost administrator password)",
    )
    reset.add_argument("user", help="the user's login name")
    reset.add_argument(
        "--write-client-file",
        action="store_true",
        help="also record it in the local client file the facade logs in with",
    )

    sub.add_parser(
        "enrollment-secret",
        help="print the secret render-node agents enroll with (docs/security.md)",
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


class LocalFarm:
    """What `dispatcher run` sets up for this machine's user: the administrator
    (random password on first start) and the agents' enrollment secret, both
    recorded in the local client file (mode 0600) the facade reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.user = settings.admin_user
        self.password = ""
        self.enrollment_secret = ""

    def prepare(self, db: Database) -> None:
        from muster_gateway.client_config import read_client_config
        from muster_services.admin.accounts import AccountsService
        from muster_services.admin.login import bootstrap_administrator, reset_password
        from muster_services.core.auth import ENROLLMENT_SECRET, farm_secret

        accounts = AccountsService(db)
        created = bootstrap_administrator(accounts, self.user, self.settings.admin_password())
        if created:
            self.password = created
            _LOG.info("created the administrator %r (password in the client file)", self.user)
        else:
            known = read_client_config()
            if known.get("user") == self.user and accounts.verify_password(
                self.user, str(known.get("password", ""))
            ):
                self.password = str(known["password"])
            elif not self.settings.database_url:
                # The embedded database is this user's own: recover access.
                self.password = reset_password(accounts, self.user)
                _LOG.info("new password for %r written to the client file", self.user)
            else:
                _LOG.warning(
                    "the client file has no working password for %r; run"
                    " `dispatcher reset-password %s --write-client-file`",
                    self.user,
                    self.user,
                )
        self.enrollment_secret = farm_secret(
            db, ENROLLMENT_SECRET, self.settings.enrollment_secret()
        )


def _ready(
    names: Sequence[str],
    farm: LocalFarm | None,
    agents: int = 0,
    data_dir: Path | None = None,
    started: list[Supervisor] | None = None,
    dashboards: list[WebServer] | None = None,
) -> Callable[[str, int], None]:
    def announce(host: str, port: int) -> None:
        if farm is not None:
            # Lets `import MDispatcherAPI` on this machine find the dispatcher
            # and log in as its administrator.
            from muster_gateway.client_config import write_client_config

            path = write_client_config(
                f"{host}:{port}",
                user=farm.user,
                password=farm.password,
                enrollment_secret=farm.enrollment_secret,
            )
            _LOG.info("facade client file written to %s", path)
        if agents > 0 and data_dir is not None and started is not None and farm is not None:
            supervisor = local_agents(f"{host}:{port}", agents, data_dir, farm.enrollment_secret)
            started.append(supervisor)
            supervisor.start()
        if farm is not None and dashboards is not None:
            dashboard = local_dashboard(f"{host}:{port}")
            if dashboard is not None:
                dashboards.append(dashboard)
                sys.stdout.write(f"dashboard at {dashboard.url}\n")
        # The one line scripts and tests wait for; keep its shape stable. One
        # write with its newline: print() writes the newline apart, and with an
        # unbuffered stdout a log line on a shared stderr could land between.
        sys.stdout.write(f"dispatcher ready: {' '.join(names)} at {host}:{port}\n")
        sys.stdout.flush()

    return announce


def _status(address: str, timeout: float) -> int:
    """Print a table of the services a dispatcher reflects and their health."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    from muster_gateway.tls import open_channel

    with open_channel(address) as channel:
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
    if "farm.jobs.v1.JobsService" in names:
        _print_template_problems(address, timeout)
    return 0 if all(s in ("SERVING", "-") for _, s in rows) else 1


def _print_template_problems(address: str, timeout: float) -> None:
    """The template files that failed to load, as the jobs service reports
    them (ListTemplates), when this user can log in (MUSTER_USER /
    MUSTER_PASSWORD or the local client file)."""
    import grpc

    from muster_gateway.connection import Connection
    from muster_proto.jobs.v1 import jobs_pb2

    os.environ.setdefault("MUSTER_DISPATCHER", address)
    connection = Connection()
    try:
        metadata = connection.metadata()
        if not metadata:
            print("\ntemplate files: not checked (no credentials: MUSTER_USER/MUSTER_PASSWORD)")
            return
        reply = connection.jobs().ListTemplates(
            jobs_pb2.ListTemplatesRequest(page_size=1), metadata=metadata, timeout=timeout
        )
    except grpc.RpcError as exc:
        print(f"\ntemplate files: not checked ({exc.code().name}: {exc.details()})")
        return
    finally:
        connection.close()
    if not reply.problems:
        print("\ntemplate files: all loaded")
        return
    print(
        f"\ntemplate files: {len(reply.problems)} could not be used (ListTemplates has each whole)"
    )
    for problem in reply.problems:
        last = problem.error.strip().splitlines()[-1] if problem.error.strip() else ""
        print(f"  {problem.file_path}: {last}")


def _with_database(settings: Settings, work: Callable[[Database], int]) -> int:
    runtime = DatabaseRuntime(settings)
    try:
        url = runtime.url()
        migrate.upgrade(url)
        db = Database(url, pool_size=2)
        try:
            return work(db)
        finally:
            db.dispose()
    finally:
        runtime.stop()


def _operator_command(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    """Commands for whoever can reach the database (the farm's operator)."""
    from muster_services.core.auth import ENROLLMENT_SECRET, farm_secret

    if args.command == "enrollment-secret":
        print(farm_secret(db, ENROLLMENT_SECRET, settings.enrollment_secret()))
        return 0
    from muster_services.admin.accounts import AccountsService
    from muster_services.admin.login import reset_password
    from muster_services.core.errors import DomainError

    try:
        password = reset_password(AccountsService(db), args.user)
    except DomainError as exc:
        print(f"dispatcher: {exc.message}", file=sys.stderr)
        return 1
    if args.write_client_file:
        from muster_gateway.client_config import read_client_config, write_client_config

        known = read_client_config()
        address = str(known.pop("address", ""))
        path = write_client_config(address, **{**known, "user": args.user, "password": password})
        print(f"new password for {args.user} written to {path}")
    else:
        print(password)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "listen", None):
        settings = replace(settings, listen=args.listen)
    settings = replace(settings, metrics_listen=_metrics_listen(args, settings, os.environ))
    logs.configure(settings.log_level, settings.log_format)
    try:
        return _command(args, settings)
    except SettingsError as exc:  # e.g. no database URL and no embedded PostgreSQL
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2


def _command(args: argparse.Namespace, settings: Settings) -> int:
    from muster_services import app

    if args.command == "status":
        return _status(args.address or settings.listen, args.timeout)

    if args.command in ("reset-password", "enrollment-secret"):
        return _with_database(settings, lambda db: _operator_command(args, settings, db))

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
    farm = LocalFarm(settings) if running else None
    names = list(app.SERVICE_NAMES) if running else list(dict.fromkeys(args.services))
    agents = 0
    if running:
        agents = args.agents if args.agents is not None else _local_agents()
        if agents < 0:
            print("dispatcher: --agents must be >= 0", file=sys.stderr)
            return 2
    started: list[Supervisor] = []
    dashboards: list[WebServer] = []

    def stop_agents() -> None:
        for supervisor in started:
            supervisor.stop()
        while dashboards:
            dashboards.pop().stop()

    try:
        app.serve(
            names,
            settings,
            _ready(names, farm, agents, settings.data_dir, started, dashboards),
            run_migrations=not getattr(args, "no_migrate", False),
            prepare=farm.prepare if farm is not None else None,
            on_stopping=stop_agents,
        )
    except OSError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_agents()
    return 0


# The metrics port of `dispatcher run` (docs/metrics.md).
DEV_METRICS_PORT = 9464


def _metrics_listen(args: argparse.Namespace, settings: Settings, env: Mapping[str, str]) -> str:
    """Where the metrics endpoint listens: --metrics-listen, else
    MUSTER_METRICS_LISTEN, else for `dispatcher run` the gRPC host's port
    DEV_METRICS_PORT (a free port when the gRPC port is one: port 0)."""
    chosen = getattr(args, "metrics_listen", None)
    if chosen is None:
        chosen = settings.metrics_listen if "MUSTER_METRICS_LISTEN" in env else None
    if chosen is None and args.command == "run":
        host, _, port = settings.listen.rpartition(":")
        chosen = f"{host}:{0 if port == '0' else DEV_METRICS_PORT}"
    chosen = (chosen or "").strip()
    return "" if chosen.lower() == "off" else chosen


def _local_agents() -> int:
    raw = os.environ.get("MUSTER_LOCAL_AGENTS", "").strip()
    try:
        return int(raw) if raw else 2
    except ValueError:
        return 2


if __name__ == "__main__":
    sys.exit(main())
