"""TLS for every server and every client of the dispatcher.

Servers: `MUSTER_TLS_CERT_FILE` and `MUSTER_TLS_KEY_FILE` turn TLS on;
`MUSTER_TLS_CLIENT_CA_FILE` additionally requires every client to present a
certificate signed by that CA (mutual TLS).
Clients (the facade, agents, notificators, the `dispatcher` CLI and the
services calling each other): `MUSTER_TLS_CA_FILE` makes them connect with TLS
and verify the server against that CA; `MUSTER_TLS_CLIENT_CERT_FILE` and
`MUSTER_TLS_CLIENT_KEY_FILE` are the certificate they present for mutual TLS;
`MUSTER_TLS_SERVER_NAME` overrides the name checked in the server's
certificate (when clients reach it by IP address).
Without them, channels are plaintext: fine on one workstation's loopback,
not on a network (docs/security.md).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio


class TLSError(ValueError):
    """A TLS file setting that cannot be used."""


def _read(name: str, value: str) -> bytes:
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise TLSError(f"{name}={value!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ServerTLS:
    cert_file: str
    key_file: str
    client_ca_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerTLS | None:
        env = os.environ if env is None else env
        cert = env.get("MUSTER_TLS_CERT_FILE", "").strip()
        key = env.get("MUSTER_TLS_KEY_FILE", "").strip()
        client_ca = env.get("MUSTER_TLS_CLIENT_CA_FILE", "").strip()
        if not cert and not key:
            if client_ca:
                raise TLSError("MUSTER_TLS_CLIENT_CA_FILE needs MUSTER_TLS_CERT_FILE/KEY_FILE")
            return None
        if not (cert and key):
            raise TLSError("TLS needs both MUSTER_TLS_CERT_FILE and MUSTER_TLS_KEY_FILE")
        return cls(cert, key, client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        pair = (
            _read("MUSTER_TLS_KEY_FILE", self.key_file),
            _read("MUSTER_TLS_CERT_FILE", self.cert_file),
        )
        if self.client_ca_file:
            return grpc.ssl_server_credentials(
                [pair],
                root_certificates=_read("MUSTER_TLS_CLIENT_CA_FILE", self.client_ca_file),
                require_client_auth=True,
            )
        return grpc.ssl_server_credentials([pair])


@dataclass(frozen=True)
class ClientTLS:
    ca_file: str
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientTLS | None:
        env = os.environ if env is None else env
        ca = env.get("MUSTER_TLS_CA_FILE", "").strip()
        cert = env.get("MUSTER_TLS_CLIENT_CERT_FILE", "").strip()
        key = env.get("MUSTER_TLS_CLIENT_KEY_FILE", "").strip()
        if not ca:
            if cert or key:
                raise TLSError("a client certificate needs MUSTER_TLS_CA_FILE too")
            return None
        if bool(cert) != bool(key):
            raise TLSError(
                "mutual TLS needs both MUSTER_TLS_CLIENT_CERT_FILE and MUSTER_TLS_CLIENT_KEY_FILE"
            )
        return cls(ca, cert, key, env.get("MUSTER_TLS_SERVER_NAME", "").strip())

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read("MUSTER_TLS_CA_FILE", self.ca_file),
            private_key=(
                _read("MUSTER_TLS_CLIENT_KEY_FILE", self.key_file) if self.key_file else None
            ),
            certificate_chain=(
                _read("MUSTER_TLS_CLIENT_CERT_FILE", self.cert_file) if self.cert_file else None
            ),
        )

    def options(self) -> list[tuple[str, Any]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


# Calls are spread over every address a target resolves to (each replica behind
# a headless Service, `dns:///muster-jobs-headless...:50051`, or the addresses of
# `ipv4:a:p,b:p`), not all sent to the first one (gRPC's default, pick_first).
ROUND_ROBIN: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}


def balanced(options: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """`options` whose service config balances calls round robin (added to the
    service config they give, unless it names its own policy)."""
    result = list(options)
    for index, (key, value) in enumerate(result):
        if key == "grpc.service_config":
            config = {**ROUND_ROBIN, **json.loads(value)}
            result[index] = (key, json.dumps(config))
            return result
    return [*result, ("grpc.service_config", json.dumps(ROUND_ROBIN))]


def open_channel(
    address: str, options: Sequence[tuple[str, Any]] = (), tls: ClientTLS | None = None
) -> grpc.Channel:
    """A blocking channel to `address` (balanced over its addresses), with TLS
    when the environment asks for it."""
    tls = tls or ClientTLS.from_env()
    if tls is None:
        return grpc.insecure_channel(address, options=balanced(options))
    return grpc.secure_channel(
        address, tls.credentials(), options=[*balanced(options), *tls.options()]
    )


def open_aio_channel(
    address: str, options: Sequence[tuple[str, Any]] = (), tls: ClientTLS | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to `address` (balanced over its addresses), with TLS
    when the environment asks for it."""
    tls = tls or ClientTLS.from_env()
    if tls is None:
        return grpc.aio.insecure_channel(address, options=balanced(options))
    return grpc.aio.secure_channel(
        address, tls.credentials(), options=[*balanced(options), *tls.options()]
    )


# --- calls carrying a token ----------------------------------------------------------


class _Authorize(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds a token to every call that does not carry one already."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def _details(self, details: Any) -> Any:
        given = list(details.metadata or ())
        if any(k == "authorization" for k, _ in given):
            return details
        return _Details(
            details.method,
            details.timeout,
            [*given, *self.metadata],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


def with_token(channel: grpc.Channel, token: str) -> grpc.Channel:
    """`channel` whose calls carry `token` unless they name their own
    (command-line tools, benchmarks and tests; the facade adds its own)."""
    return grpc.intercept_channel(channel, _Authorize((("authorization", f"Bearer {token}"),)))
