"""Agent enrollment: the farm's secret buys a token bound to one node identity.

An agent calls Enroll with the enrollment secret, its host name and instance
number, and gets an agent token. The token opens only the agent protocol
(muster_services/core/permissions.py: AGENT), and a session that registers as
another host or instance than the token names is refused: a leaked agent
token cannot impersonate other nodes, and no agent token can call the
NodesService, JobsService or AdminService.
"""

from __future__ import annotations

from muster_services.core.auth import TokenSigner, check_secret
from muster_services.core.caller import Caller
from muster_services.core.errors import InvalidArgument, PermissionDenied, Unauthenticated

AGENT_TOKEN_TTL_SECONDS = 24 * 3600.0
MAX_HOST_NAME = 255


class Enrollment:
    def __init__(self, signer: TokenSigner, secret: str) -> None:
        self.signer = signer
        self.secret = secret

    def enroll(self, secret: str, host_name: str, instance: int) -> tuple[str, float]:
        """An agent token for (host_name, instance) and when it expires."""
        check_identity_fields(host_name, instance)
        if not check_secret(self.secret, secret):
            raise Unauthenticated("enrollment refused: wrong enrollment secret")
        return self.signer.issue(
            f"agent:{host_name}#{instance}",
            "agent",
            "",
            AGENT_TOKEN_TTL_SECONDS,
            host=host_name,
            instance=instance,
        )


def check_identity_fields(host_name: str, instance: int) -> None:
    if not host_name.strip() or len(host_name) > MAX_HOST_NAME or "\x00" in host_name:
        raise InvalidArgument(f"host_name: 1 to {MAX_HOST_NAME} characters, no NUL")
    if instance < 0:
        raise InvalidArgument("instance_number must be >= 0")


def check_agent_identity(caller: Caller, host_name: str, instance: int) -> None:
    """A session registers only as the node its token was enrolled for."""
    if caller.kind != "agent":
        return  # only agents reach the agent protocol (the guard made sure)
    if (caller.host, caller.instance) != (host_name, instance):
        raise PermissionDenied(
            f"this agent token is for {caller.host!r} instance {caller.instance};"
            f" it cannot register {host_name!r} instance {instance}"
        )
