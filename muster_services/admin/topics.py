"""Event topics the admin domain publishes (payloads: docs/admin.md).

Every publisher and consumer names a topic through these constants; the docs'
tables are checked against them (tests/core/test_topics.py).
"""

from __future__ import annotations

from typing import Final

USER_CREATED: Final = "user.created"
USER_UPDATED: Final = "user.updated"
USER_DELETED: Final = "user.deleted"
GROUP_CREATED: Final = "group.created"
GROUP_UPDATED: Final = "group.updated"
GROUP_DELETED: Final = "group.deleted"
POOL_CREATED: Final = "pool.created"
POOL_UPDATED: Final = "pool.updated"
POOL_DELETED: Final = "pool.deleted"
POOLS_CHANGED: Final = "pools.changed"
REPOSITORY_CREATED: Final = "repository.created"
REPOSITORY_UPDATED: Final = "repository.updated"
REPOSITORY_DELETED: Final = "repository.deleted"
REPOSITORIES_CHANGED: Final = "repositories.changed"
CONFIG_CHANGED: Final = "config.changed"
ENGINE_CHANGED: Final = "engine.changed"
SYSTEM_SOFT_RESTART: Final = "system.soft_restart"
SYSTEM_STATISTICS_RESET: Final = "system.statistics_reset"
SYSTEM_NETWORK_SCAN: Final = "system.network_scan"
LOG_MESSAGE_ADDED: Final = "log.message_added"
LOG_CLEARED: Final = "log.cleared"
LOG_FILE_REMOVED: Final = "log.file_removed"
STATISTICS_CLEARED: Final = "statistics.cleared"
HISTORY_CLEARED: Final = "history.cleared"

ALL: Final = frozenset(
    value for name, value in list(globals().items()) if name.isupper() and isinstance(value, str)
)
