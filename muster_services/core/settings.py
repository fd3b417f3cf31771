"""Settings, read once from MUSTER_* environment variables.

Every variable is documented in docs/configuration.md; keep the two in step
(tests/core/test_settings.py checks that every field is documented).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# How long a login token is valid (MUSTER_TOKEN_TTL_SECONDS).
DEFAULT_TOKEN_TTL_SECONDS = 12 * 3600.0


class SettingsError(ValueError):
    """A MUSTER_* variable holds a value that cannot be used."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _path(env: dict[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw).expanduser().resolve() if raw else None


def _file_text(path: Path, name: str) -> str:
    """The content of the file a *_FILE variable names, without surrounding white space."""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}={str(path)!r}: {exc.strerror or exc}") from None


def _secret_file(path: Path | None, name: str) -> str:
    if path is None:
        return ""
    value = _file_text(path, name)
    if len(value) < 8:
        raise SettingsError(f"{name}: the secret in {str(path)!r} is shorter than 8 characters")
    return value


def _database_url(env: dict[str, str], file: Path | None) -> str:
    """MUSTER_DATABASE_URL, or the content of MUSTER_DATABASE_URL_FILE (one of them)."""
    url = env.get("MUSTER_DATABASE_URL", "").strip()
    if file is None:
        return url
    if url:
        raise SettingsError("set MUSTER_DATABASE_URL or MUSTER_DATABASE_URL_FILE, not both")
    url = _file_text(file, "MUSTER_DATABASE_URL_FILE")
    if not url:
        raise SettingsError(f"MUSTER_DATABASE_URL_FILE: {str(file)!r} is empty")
    return url


@dataclass(frozen=True)
class Settings:
    # Postgres URL (postgresql://... or postgresql+psycopg://...). Empty: the
    # embedded PostgreSQL in <data_dir>/postgres is started and used.
    database_url: str = ""
    # File holding that URL (a Kubernetes Secret); read into database_url.
    database_url_file: Path | None = None
    # Folder for the embedded PostgreSQL and other local state.
    data_dir: Path = field(default_factory=lambda: Path(".data").resolve())
    # host:port the gRPC server listens on ("127.0.0.1:0" picks a free port).
    listen: str = "127.0.0.1:50051"
    # host:port of a plaintext listener answering only the gRPC health check
    # (Kubernetes probes cannot use TLS). Empty: none.
    health_listen: str = ""
    # host:port of the Prometheus metrics endpoint (HTTP, /metrics). Empty:
    # none, and RPCs are not measured (`dispatcher run` has its own default).
    metrics_listen: str = ""
    # Seconds in-flight calls get to finish on shutdown.
    shutdown_grace_seconds: float = 10.0
    # Worker threads for the synchronous (jobs, admin) servicers.
    worker_threads: int = 16
    # SQLAlchemy connection pool size per process.
    db_pool_size: int = 10
    log_level: str = "info"
    log_format: str = "text"
    # Events older than this are pruned from the outbox. None: the dispatcher
    # configuration's event_retention_hours.
    event_retention_hours: float | None = None
    # Seconds a bus listener waits for a NOTIFY before polling anyway.
    event_poll_seconds: float = 5.0
    # host:port of the jobs service, for the nodes service's render reports.
    # Empty: the server this process runs (the jobs service must be co-hosted).
    jobs_address: str = ""
    # Seconds without a heartbeat after which a node is lost (its chunk requeued).
    # None: the dispatcher configuration's node_lost_timeout_seconds.
    node_lost_timeout_seconds: float | None = None
    # Seconds after which a console or notificator connection whose replica
    # stopped refreshing it (the replica died) leaves the lists.
    client_timeout_seconds: float = 60.0
    # UDP port render-node agents answer network scan beacons on.
    discovery_port: int = 50052
    # Folder of dispatcher hook files (*.py). Empty: <data_dir>/hooks.
    hooks_dir: Path | None = None
    # Seconds a hook may run before it is abandoned.
    hook_timeout_seconds: float = 10.0
    # Folder of the studio's MTemplateAPI template files (*.py). Empty:
    # <data_dir>/templates.
    templates_dir: Path | None = None
    # Seconds between two looks at the template files for changes.
    templates_poll_seconds: float = 2.0
    # Seconds a login token stays valid.
    token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS
    # Name of the first administrator, created at start when the farm has none.
    admin_user: str = "admin"
    # File holding that administrator's initial password (a Kubernetes Secret).
    # Unset: `dispatcher serve` creates no administrator; `dispatcher run`
    # creates one with a random password written to the local client file.
    admin_password_file: Path | None = None
    # File holding the agents' enrollment secret. Unset: a random secret kept
    # in the database (`dispatcher enrollment-secret` prints it).
    enrollment_secret_file: Path | None = None
    # Seconds between the server's keepalive pings on an idle connection.
    keepalive_seconds: float = 30.0
    # Seconds a client connection may live before the server asks it to
    # reconnect (GOAWAY, with a 10% jitter): long-lived agent streams then
    # spread over replicas started later (a rollout, a scale-up).
    max_connection_age_seconds: float = 1800.0
    # Seconds the calls of such a connection get to finish before they are
    # cancelled (an agent's stream reconnects and re-registers at once).
    max_connection_age_grace_seconds: float = 30.0

    @property
    def hooks_folder(self) -> Path:
        return self.hooks_dir or self.data_dir / "hooks"

    @property
    def templates_folder(self) -> Path:
        return self.templates_dir or self.data_dir / "templates"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        database_url_file = _path(env, "MUSTER_DATABASE_URL_FILE")
        data_dir = Path(env.get("MUSTER_DATA_DIR", "").strip() or ".data").expanduser().resolve()
        return cls(
            database_url=_database_url(env, database_url_file),
            database_url_file=database_url_file,
            data_dir=data_dir,
            listen=env.get("MUSTER_LISTEN", "").strip() or cls.listen,
            health_listen=env.get("MUSTER_HEALTH_LISTEN", "").strip(),
            metrics_listen=env.get("MUSTER_METRICS_LISTEN", "").strip(),
            shutdown_grace_seconds=_float(
                env, "MUSTER_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
            worker_threads=_int(env, "MUSTER_WORKER_THREADS", cls.worker_threads, 1),
            db_pool_size=_int(env, "MUSTER_DB_POOL_SIZE", cls.db_pool_size, 1),
            log_level=_choice(
                env, "MUSTER_LOG_LEVEL", cls.log_level, ("debug", "info", "warning", "error")
            ),
            log_format=_choice(env, "MUSTER_LOG_FORMAT", cls.log_format, ("text", "json")),
            event_retention_hours=(
                _float(env, "MUSTER_EVENT_RETENTION_HOURS", 168.0, 0.0)
                if env.get("MUSTER_EVENT_RETENTION_HOURS", "").strip()
                else None
            ),
            event_poll_seconds=_float(
                env, "MUSTER_EVENT_POLL_SECONDS", cls.event_poll_seconds, 0.05
            ),
            jobs_address=env.get("MUSTER_JOBS_ADDRESS", "").strip(),
            node_lost_timeout_seconds=(
                _float(env, "MUSTER_NODE_LOST_TIMEOUT_SECONDS", 60.0, 1.0)
                if env.get("MUSTER_NODE_LOST_TIMEOUT_SECONDS", "").strip()
                else None
            ),
            client_timeout_seconds=_float(
                env, "MUSTER_CLIENT_TIMEOUT_SECONDS", cls.client_timeout_seconds, 2.0
            ),
            discovery_port=_int(env, "MUSTER_DISCOVERY_PORT", cls.discovery_port, 1),
            hooks_dir=(
                Path(env["MUSTER_HOOKS_DIR"]).expanduser().resolve()
                if env.get("MUSTER_HOOKS_DIR", "").strip()
                else None
            ),
            hook_timeout_seconds=_float(
                env, "MUSTER_HOOK_TIMEOUT_SECONDS", cls.hook_timeout_seconds, 0.1
            ),
            templates_dir=(
                Path(env["MUSTER_TEMPLATES_DIR"]).expanduser().resolve()
                if env.get("MUSTER_TEMPLATES_DIR", "").strip()
                else None
            ),
            templates_poll_seconds=_float(
                env, "MUSTER_TEMPLATES_POLL_SECONDS", cls.templates_poll_seconds, 0.1
            ),
            token_ttl_seconds=_float(env, "MUSTER_TOKEN_TTL_SECONDS", cls.token_ttl_seconds, 60.0),
            admin_user=env.get("MUSTER_ADMIN_USER", "").strip() or cls.admin_user,
            admin_password_file=_path(env, "MUSTER_ADMIN_PASSWORD_FILE"),
            enrollment_secret_file=_path(env, "MUSTER_ENROLLMENT_SECRET_FILE"),
            keepalive_seconds=_float(env, "MUSTER_KEEPALIVE_SECONDS", cls.keepalive_seconds, 1.0),
            max_connection_age_seconds=_float(
                env, "MUSTER_MAX_CONNECTION_AGE_SECONDS", cls.max_connection_age_seconds, 1.0
            ),
            max_connection_age_grace_seconds=_float(
                env,
                "MUSTER_MAX_CONNECTION_AGE_GRACE_SECONDS",
                cls.max_connection_age_grace_seconds,
                0.0,
            ),
        )

    def enrollment_secret(self) -> str:
        """The configured enrollment secret ('' when the database keeps it)."""
        return _secret_file(self.enrollment_secret_file, "MUSTER_ENROLLMENT_SECRET_FILE")

    def admin_password(self) -> str:
        """The configured initial administrator password ('' when none)."""
        return _secret_file(self.admin_password_file, "MUSTER_ADMIN_PASSWORD_FILE")


# Environment variable for each field, the single source for docs and tests.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "database_url": "MUSTER_DATABASE_URL",
    "database_url_file": "MUSTER_DATABASE_URL_FILE",
    "data_dir": "MUSTER_DATA_DIR",
    "listen": "MUSTER_LISTEN",
    "health_listen": "MUSTER_HEALTH_LISTEN",
    "metrics_listen": "MUSTER_METRICS_LISTEN",
    "shutdown_grace_seconds": "MUSTER_SHUTDOWN_GRACE_SECONDS",
    "worker_threads": "MUSTER_WORKER_THREADS",
    "db_pool_size": "MUSTER_DB_POOL_SIZE",
    "log_level": "MUSTER_LOG_LEVEL",
    "log_format": "MUSTER_LOG_FORMAT",
    "event_retention_hours": "MUSTER_EVENT_RETENTION_HOURS",
    "event_poll_seconds": "MUSTER_EVENT_POLL_SECONDS",
    "jobs_address": "MUSTER_JOBS_ADDRESS",
    "node_lost_timeout_seconds": "MUSTER_NODE_LOST_TIMEOUT_SECONDS",
    "client_timeout_seconds": "MUSTER_CLIENT_TIMEOUT_SECONDS",
    "discovery_port": "MUSTER_DISCOVERY_PORT",
    "hooks_dir": "MUSTER_HOOKS_DIR",
    "hook_timeout_seconds": "MUSTER_HOOK_TIMEOUT_SECONDS",
    "templates_dir": "MUSTER_TEMPLATES_DIR",
    "templates_poll_seconds": "MUSTER_TEMPLATES_POLL_SECONDS",
    "token_ttl_seconds": "MUSTER_TOKEN_TTL_SECONDS",
    "admin_user": "MUSTER_ADMIN_USER",
    "admin_password_file": "MUSTER_ADMIN_PASSWORD_FILE",
    "enrollment_secret_file": "MUSTER_ENROLLMENT_SECRET_FILE",
    "keepalive_seconds": "MUSTER_KEEPALIVE_SECONDS",
    "max_connection_age_seconds": "MUSTER_MAX_CONNECTION_AGE_SECONDS",
    "max_connection_age_grace_seconds": "MUSTER_MAX_CONNECTION_AGE_GRACE_SECONDS",
}
