"""Event topics the nodes domain publishes (payloads: docs/agent.md, docs/clients.md).

Every publisher and consumer names a topic through these constants; the docs'
tables are checked against them (tests/core/test_topics.py).
"""

from __future__ import annotations

from typing import Final

# Render nodes and their agents.
NODE_REGISTERED: Final = "node.registered"
NODE_CHANGED: Final = "node.changed"
NODE_IDLE: Final = "node.idle"
NODE_LOST: Final = "node.lost"
NODE_PAUSED: Final = "node.paused"
NODE_RESUMED: Final = "node.resumed"
NODE_DELETED: Final = "node.deleted"
NODE_EXCLUDED: Final = "node.excluded"
NODE_EXCLUSIONS_PURGED: Final = "node.exclusions_purged"
NODE_COMMAND: Final = "node.command"
# Render output forwarded to consoles that follow a chunk (data, not a change).
LOG_CHUNK: Final = "log.chunk"
SYSTEM_NETWORK_SCAN_FINISHED: Final = "system.network_scan_finished"

# Consoles and notificators.
CLIENT_CONNECTED: Final = "client.connected"
CLIENT_DISCONNECT: Final = "client.disconnect"
CLIENT_MESSAGE: Final = "client.message"

ALL: Final = frozenset(
    value for name, value in list(globals().items()) if name.isupper() and isinstance(value, str)
)
