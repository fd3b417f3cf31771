"""The running context (`muster.runningContext()`).

"dispatcher" inside dispatcher hooks and `muster-script`, "renderclient" in
code the agent runs, "notificator" in the notificator, "console" otherwise.
The process that runs a context sets MUSTER_RUNNING_CONTEXT for its code.
"""

from __future__ import annotations

import os

CONTEXTS = ("console", "dispatcher", "renderclient", "notificator")
CONTEXT_VARIABLE = "MUSTER_RUNNING_CONTEXT"


def running_context() -> str:
    value = os.environ.get(CONTEXT_VARIABLE, "").strip().lower()
    return value if value in CONTEXTS else "console"
