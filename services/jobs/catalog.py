"""Use cases of the template catalogue: seed the built-in templates, list and
get templates. The definitions and the command builder are in templates.py."""

from __future__ import annotations

from services.core.database import Database
from services.core.errors import NotFound
from services.core.paging import Page, page_of, page_request
from services.jobs import store as repo
from services.jobs.domain import TemplateRecord
from services.jobs.templates import BUILTIN_TEMPLATES


class TemplatesService:
    """The template catalogue on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def seed_templates(self) -> None:
        """Insert or refresh the built-in templates (fixed ids, docs/jobs.md).
        Idempotent; every replica runs it at start."""
        with self.db.transaction() as session:
            repo.upsert_templates(session, BUILTIN_TEMPLATES)

    def list_templates(
        self, platform: str | None, page_size: int, page_token: str
    ) -> Page[TemplateRecord]:
        request = page_request(page_size, page_token, {"platform": platform})
        with self.db.transaction() as session:
            rows = repo.list_templates(session, platform, request.after, request.size + 1)
        return page_of(rows, request, lambda r: r.id)

    def get_template(self, template_id: int) -> TemplateRecord:
        with self.db.transaction() as session:
            row = repo.get_template(session, template_id)
        if row is None:
            raise NotFound(f"template_id: template {template_id} does not exist")
        return row
