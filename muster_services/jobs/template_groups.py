"""Use cases of the templates' licence and delay groups: list them, and an
administrator's override of a group's limit (rules in licences.py, SQL at the
end of store.py)."""

from __future__ import annotations

from muster_services.core.database import Database
from muster_services.jobs import store as repo
from muster_services.jobs.licences import GroupState, checked_limit


class TemplateGroupsService:
    """The licence and delay groups on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list_groups(self) -> list[GroupState]:
        """Every group a template or an override names: licence groups first,
        each kind by name."""
        with self.db.transaction() as session:
            return [GroupState.of(row) for row in repo.template_group_states(session)]

    def set_limit(self, kind: str, name: str, value: int | None) -> GroupState:
        """Override a group's limit (None: back to the files' value); the
        group as it is after. A group no template names yet may be given one."""
        checked_limit(kind, name, value)
        with self.db.transaction() as session:
            repo.set_template_group_limit(session, kind, name, value)
            groups = [GroupState.of(row) for row in repo.template_group_states(session)]
        return next(g for g in groups if (g.kind, g.name) == (kind, name))
