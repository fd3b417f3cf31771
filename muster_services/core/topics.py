"""Event topics the shared core publishes: refused and failed calls
(muster_services/core/audit.py), written to the action log by the admin service."""

from __future__ import annotations

from typing import Final

CALL_DENIED: Final = "call.denied"
CALL_FAILED: Final = "call.failed"

ALL: Final = frozenset({CALL_DENIED, CALL_FAILED})
