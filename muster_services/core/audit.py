"""The audit of refused and failed calls.

Successful changes reach the action log through the events they publish;
calls the dispatcher refused (no token, not allowed) or that failed never
publish one, so the server's interceptor reports them here and they become
`call.denied` / `call.failed` events the admin service writes to the action
log like any other (muster_services/admin/logs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from muster_services.core import topics
from muster_services.core.bus import publish

if TYPE_CHECKING:
    from muster_services.core.server import Refusal

# Longest message kept in the log line: a refusal carries no caller payload.
MAX_MESSAGE = 500
DENIALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def audit_to_bus(db: Any) -> Callable[[Refusal], None]:
    def record(refusal: Refusal) -> None:
        denied = refusal.code in DENIALS
        service, _, name = refusal.method.strip("/").partition("/")
        with db.transaction() as session:
            publish(
                session,
                topics.CALL_DENIED if denied else topics.CALL_FAILED,
                {
                    **refusal.caller.stamp(),
                    # Who it was, even when the token did not say.
                    "actor": refusal.caller.name or "anonymous",
                    "method": f"{service.rsplit('.', 1)[-1]}.{name}",
                    "outcome": "denied" if denied else "failed",
                    "status_code": refusal.code.name,
                    "message": refusal.message[:MAX_MESSAGE],
                },
                key=refusal.caller.name,
            )

    return record
