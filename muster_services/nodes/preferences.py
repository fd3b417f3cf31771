"""Per-node template preferences: an administrator's values of a template's
client configuration items for one node (where an application is installed
on THAT node, ...). Stored in `nodes.template_preferences` as
{"<template id>": {item: value}}; delivered with every assignment of the
template (muster_services/nodes/delivery.py); on the agent they win over its local
configuration, which wins over the template's defaults.

A template id need not be loaded yet: an administrator may prepare a node
before the template file arrives.
"""

from __future__ import annotations

from collections.abc import Mapping

from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.nodes import store as repo
from muster_services.nodes import topics
from muster_services.nodes.domain import template_preferences_after
from muster_services.nodes.service import NodesService, _event


def _template_id(template_id: int, allow_all: bool) -> int:
    if template_id < 0 or (template_id == 0 and not allow_all):
        raise InvalidArgument(
            f"template_id: must be a positive id{' or 0 for all' if allow_all else ''},"
            f" got {template_id}"
        )
    return template_id


class TemplatePreferences:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set(
        self, node_id: int, template_id: int, values: Mapping[str, str], replace: bool
    ) -> dict[str, str]:
        """Sets the node's values for the template; returns them as stored."""
        _template_id(template_id, allow_all=False)
        with self.db.transaction() as session:
            node = NodesService._existing(session, node_id, lock=True)
            stored: dict[str, dict[str, str]] = dict(node.template_preferences or {})
            key = str(template_id)
            after = template_preferences_after(stored.get(key, {}), values, replace)
            if after == stored.get(key, {}):
                return after  # nothing changes: no write, no event
            if after:
                stored[key] = after
            else:
                stored.pop(key, None)
            repo.set_template_preferences(session, node_id, stored)
            _event(
                session,
                topics.NODE_CHANGED,
                node_id,
                field="template_preferences",
                template_id=template_id,
            )
        return after

    def get(self, node_id: int, template_id: int) -> list[tuple[int, dict[str, str]]]:
        """(template id, values) of one template, or of every template with values (0)."""
        _template_id(template_id, allow_all=True)
        with self.db.transaction() as session:
            node = NodesService._existing(session, node_id)
        stored = {int(k): dict(v) for k, v in (node.template_preferences or {}).items()}
        if template_id:
            return [(template_id, stored.get(template_id, {}))]
        return sorted(stored.items())
