"""Authentication: signed tokens, the farm's secrets, and the guard every call passes.

A token is `m1.<payload>.<signature>`: the payload is base64url JSON naming the
subject, its kind ("user", "service" or "agent"), role and expiry; the
signature is HMAC-SHA256 over it with the farm's signing key. Every replica of
every service reads the same key (`MUSTER_AUTH_SECRET`, else a random key the
first process stores in the `farm_secrets` table), so a token one replica
issued is accepted by all of them. Verification is local: no database round
trip per call.

The guard (`Guard.admit`) runs before every RPC (muster_services/core/server.py): it
verifies the token the call carries as `authorization: Bearer <token>`
metadata and checks the method's access level (muster_services/core/permissions.py).

Revocation: a user token carries its user's generation at login
(`token_generations`); deleting or disabling a user, or changing its role,
adds 1 (`revoke_user_tokens`), and the guard refuses a token older than its
user's generation. Each process reads the generations whole every
REVOCATION_REFRESH_SECONDS in a thread of its own (`Revocations`): no call
waits for the database, and a revocation reaches every replica within that time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from threading import Lock
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from muster_services.core.caller import Caller
from muster_services.core.errors import PermissionDenied, Unauthenticated
from muster_services.core.permissions import Access, access_of

AUTHORIZATION_KEY = "authorization"
_PREFIX = "m1"
KINDS = ("user", "service", "agent")
ADMINISTRATOR = "administrator"
# Service tokens are minted locally and renewed long before they expire.
SERVICE_TOKEN_TTL = 24 * 3600.0
# Tokens longer than this are refused before any work is done on them.
MAX_TOKEN_LENGTH = 4096
# How often each process reads the users' token generations (Revocations).
REVOCATION_REFRESH_SECONDS = 2.0

_LOG = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    """What a verified token says about its bearer."""

    subject: str
    kind: str
    role: str
    expires_at: float
    # Agents only: the node identity the token is bound to.
    host: str = ""
    instance: int = 0
    # Users only: the user's token generation when it was issued (Revocations).
    generation: int = 0


class TokenSigner:
    """Issues and verifies the farm's tokens with one HMAC key."""

    def __init__(self, key: bytes, cache_size: int = 4096) -> None:
        if len(key) < 16:
            raise ValueError("the signing key needs at least 16 bytes")
        self._key = key
        # Verified tokens, so a busy client costs one dictionary lookup per call.
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def issue(
        self,
        subject: str,
        kind: str,
        role: str,
        ttl_seconds: float,
        host: str = "",
        instance: int = 0,
        generation: int = 0,
    ) -> tuple[str, float]:
        """A token and the time (epoch seconds) it expires; `generation`: a
        user's token generation (token_generation)."""
        if kind not in KINDS:
            raise ValueError(f"unknown token kind {kind!r}")
        expires_at = time.time() + ttl_seconds
        body: dict[str, Any] = {"sub": subject, "kind": kind, "role": role, "exp": expires_at}
        if generation:
            body["gen"] = generation
        if kind == "agent":
            body.update(host=host, inst=instance)
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{_PREFIX}.{payload}.{self._sign(payload)}", expires_at

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str) -> Claims:
        """The token's claims; Unauthenticated when it is malformed, forged or expired."""
        with self._lock:
            cached = self._cache.get(token)
        claims = cached or self._verify(token)
        if claims.expires_at <= time.time():
            raise Unauthenticated("token expired: log in again")
        if cached is None:
            with self._lock:
                self._cache[token] = claims
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return claims

    def _verify(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("token too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise Unauthenticated("malformed token")
        try:
            expected = self._sign(parts[1])
        except UnicodeEncodeError:
            raise Unauthenticated("malformed token") from None
        if not hmac.compare_digest(expected, parts[2]):
            raise Unauthenticated("invalid token signature")
        try:
            body = json.loads(_unb64(parts[1]))
            claims = Claims(
                subject=str(body["sub"]),
                kind=str(body["kind"]),
                role=str(body.get("role", "")),
                expires_at=float(body["exp"]),
                host=str(body.get("host", "")),
                instance=int(body.get("inst", 0)),
                generation=int(body.get("gen", 0)),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthenticated("malformed token") from None
        if claims.kind not in KINDS:
            raise Unauthenticated("malformed token")
        return claims


def bearer_token(metadata: Iterable[tuple[str, Any]]) -> str:
    for key, value in metadata:
        if key == AUTHORIZATION_KEY:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return token.strip()
    return ""


class Guard:
    """Decides who a call comes from and whether that caller may make it."""

    def __init__(self, signer: TokenSigner, revocations: Revocations | None = None) -> None:
        self.signer = signer
        self.revocations = revocations

    def admit(self, method: str, metadata: Iterable[tuple[str, Any]], peer: str) -> Caller:
        """The caller of `method`, or Unauthenticated / PermissionDenied."""
        caller = self.identify(method, metadata, peer)
        self.authorize(method, caller)
        return caller

    def identify(self, method: str, metadata: Iterable[tuple[str, Any]], peer: str) -> Caller:
        """Who the call's token names (Unauthenticated without a valid one)."""
        token = bearer_token(metadata)
        if access_of(method) is Access.PUBLIC:
            return Caller(name="", peer=peer)
        if not token:
            raise Unauthenticated(f"{_short(method)} needs a token: log in first")
        claims = self.signer.verify(token)
        if (
            claims.kind == "user"
            and self.revocations is not None
            and claims.generation < self.revocations.generation(claims.subject)
        ):
            raise Unauthenticated(
                f"token of {claims.subject!r} revoked (the account was changed): log in again"
            )
        return Caller(
            name=claims.subject,
            peer=peer,
            role=claims.role,
            kind=claims.kind,
            host=claims.host,
            instance=claims.instance,
        )

    def authorize(self, method: str, caller: Caller) -> None:
        """PermissionDenied unless the method's access level lets `caller` in."""
        access = access_of(method)
        if access is Access.PUBLIC:
            return
        if access is Access.AGENT:
            allowed = caller.kind == "agent"
        elif access is Access.SERVICE:
            allowed = caller.kind == "service"
        elif access is Access.ADMIN:
            allowed = caller.kind in ("user", "service") and caller.role == ADMINISTRATOR
        else:  # READ, USER: ownership is the service layer's to check
            allowed = caller.kind in ("user", "service")
        if not allowed:
            raise PermissionDenied(f"{_short(method)} needs {access.needs}; {caller.describe()}")


def _short(method: str) -> str:
    """'/farm.jobs.v1.JobsService/DeleteJob' -> 'JobsService.DeleteJob'."""
    service, _, name = method.strip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}.{name}"


# --- the farm's secrets --------------------------------------------------------------


def farm_secret(db: Any, name: str, configured: str = "") -> str:
    """A farm-wide secret: `configured` when given, else the one stored in
    `farm_secrets`, created at random by the first process that asks."""
    if configured:
        return configured
    from muster_services.core.schema import farm_secrets

    with db.transaction() as session:
        session.execute(
            pg_insert(farm_secrets)
            .values(name=name, value=secrets.token_urlsafe(32))
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return str(
            session.execute(
                select(farm_secrets.c.value).where(farm_secrets.c.name == name)
            ).scalar_one()
        )


def store_secret(db: Any, name: str, value: str) -> None:
    """Replace a stored farm secret (rotation)."""
    from muster_services.core.schema import farm_secrets

    with db.transaction() as session:
        session.execute(farm_secrets.delete().where(farm_secrets.c.name == name))
        session.execute(insert(farm_secrets).values(name=name, value=value))


# Names of the farm's stored secrets.
SIGNING_KEY = "token_signing_key"
ENROLLMENT_SECRET = "agent_enrollment_secret"


def signer_for(db: Any) -> TokenSigner:
    return TokenSigner(farm_secret(db, SIGNING_KEY).encode())


def check_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of two secrets."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


# --- revocation -----------------------------------------------------------------------


def token_generation(session: Any, user_name: str) -> int:
    """The user's token generation (0: never revoked), for its next token."""
    from muster_services.core.schema import token_generations

    found = session.execute(
        select(token_generations.c.generation).where(token_generations.c.user_name == user_name)
    ).scalar()
    return int(found or 0)


def revoke_user_tokens(session: Any, user_name: str) -> None:
    """Every token the user holds stops working (within
    REVOCATION_REFRESH_SECONDS on every replica): its generation goes up."""
    from muster_services.core.schema import token_generations

    statement = pg_insert(token_generations).values(user_name=user_name, generation=1)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["user_name"],
            set_={"generation": token_generations.c.generation + 1, "revoked_at": func.now()},
        )
    )


class Revocations:
    """The users' token generations as this process's guard checks them:
    read whole (a row per user whose tokens were ever revoked) on first use
    and again every `refresh_seconds` by a daemon thread."""

    def __init__(self, db: Any, refresh_seconds: float = REVOCATION_REFRESH_SECONDS) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self._generations: dict[str, int] = {}
        self._started = False
        self._start_lock = Lock()

    def generation(self, user_name: str) -> int:
        if not self._started:
            self._start()
        return self._generations.get(user_name, 0)

    def refresh(self) -> None:
        from muster_services.core.schema import token_generations

        with self._db.read() as connection:
            rows = connection.execute(
                select(token_generations.c.user_name, token_generations.c.generation)
            ).all()
        self._generations = {str(r.user_name): int(r.generation) for r in rows}

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._refresh_logged()  # once before the first answer
            threading.Thread(target=self._run, name="token-revocations", daemon=True).start()
            self._started = True

    def _run(self) -> None:
        delay = self._refresh_seconds
        while True:
            time.sleep(delay)
            # The database away: the last generations stand, and the reads
            # slow down (to 30 s) until it answers again.
            ok = self._refresh_logged(quiet=delay > self._refresh_seconds)
            delay = self._refresh_seconds if ok else min(delay * 2, 30.0)

    def _refresh_logged(self, quiet: bool = False) -> bool:
        try:
            self.refresh()
        except Exception as exc:
            if not quiet:  # once per outage
                _LOG.warning("reading the token generations failed: %s", exc)
            return False
        return True


# --- one process's security ---------------------------------------------------------


@dataclass(frozen=True)
class Security:
    """The signer and the audit sink a process's servers and services share."""

    signer: TokenSigner
    # Records refused and failed calls (muster_services/core/server.py Refusal).
    audit: Any = None
    # The users' token generations (None: no revocation, as in unit tests).
    revocations: Revocations | None = None

    @property
    def guard(self) -> Guard:
        return Guard(self.signer, self.revocations)

    def service_token(self, name: str, ttl_seconds: float = SERVICE_TOKEN_TTL) -> str:
        """A token for the dispatcher's own service `name` (administrator rights)."""
        return self.signer.issue(f"service:{name}", "service", ADMINISTRATOR, ttl_seconds)[0]


_securities: dict[str, Security] = {}
_securities_lock = Lock()


def security_for(db: Any) -> Security:
    """The Security of every component built on this database (one per URL)."""
    key = str(db.engine.url)
    with _securities_lock:
        found = _securities.get(key)
        if found is None:
            from muster_services.core.audit import audit_to_bus

            found = Security(signer_for(db), audit_to_bus(db), Revocations(db))
            _securities[key] = found
        return found


def auth_metadata(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying `token`."""
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


class ServiceIdentity:
    """The token a service calls other services with, renewed before it expires."""

    def __init__(self, security: Security, name: str) -> None:
        self.security = security
        self.name = name
        self._token = ""
        self._renew_at = 0.0
        self._lock = Lock()

    def metadata(self) -> tuple[tuple[str, str]]:
        with self._lock:
            now = time.time()
            if now >= self._renew_at:
                self._token = self.security.service_token(self.name)
                self._renew_at = now + SERVICE_TOKEN_TTL / 2
            return auth_metadata(self._token)
