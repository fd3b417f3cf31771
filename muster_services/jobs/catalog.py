"""Use cases of the template catalogue: the template files loaded into the
database, and templates listed and read.

Templates are MTemplateAPI files (muster_gateway/template_engine.py): the built-in
library (`muster_services/jobs/library/`) and the studio's folder
(MUSTER_TEMPLATES_DIR). Every replica loads them at start and whenever a file
changes (`sync`, polled); writers take turns on an advisory lock and write
only what changed, so replicas reading the same files agree. A template keeps
every version of its code (`template_versions`): a running chunk keeps the
version it was assigned with, new chunks get the new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muster_gateway import template_engine as engine
from muster_services.core.bus import publish_change
from muster_services.core.database import Database
from muster_services.core.errors import NotFound
from muster_services.core.paging import Page, page_of, page_request
from muster_services.jobs import store as repo
from muster_services.jobs import topics
from muster_services.jobs.domain import TemplateRecord

_LOG = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int], ...]


def _stamp(folders: tuple[Path | None, ...]) -> Stamp:
    """What tells that a template file changed: path, mtime, size of each file."""
    found = []
    for folder in folders:
        for path in engine.template_files(folder):
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


@dataclass(frozen=True)
class SyncResult:
    """What one sync wrote (template ids), for logs and tests."""

    saved: tuple[int, ...] = ()
    broken: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.saved or self.broken or self.removed)


def template_values(entry: engine.LoadedTemplate) -> dict[str, Any]:
    """The templates row of a template loaded from a file."""
    template = entry.template
    described = engine.definition(template)
    return {
        "id": template.getID(),
        "name": template.getName(),
        "description": template.getDescription(),
        "commands": [],
        # Patterns a template declares (attributes logErrorPatterns and
        # logWarningPatterns): its nodes mark the lines they match.
        "log_error_patterns": [str(p) for p in getattr(template, "logErrorPatterns", ())],
        "log_warning_patterns": [str(p) for p in getattr(template, "logWarningPatterns", ())],
        "success_exit_codes": [],
        "default_packet_type": described["packet_type"],
        "script_name": Path(entry.file_path).name,
        "enabled": True,
        "version": entry.version,
        "file_path": entry.file_path,
        "load_error": "",
        "builtin": entry.builtin,
        "definition": described,
        "licenses_group": template.getLicensesGroup(),
        "max_licenses": template.getMaximumLicenses(),
        "delay_group": template.getDelayGroup(),
        "delay_seconds": template.getDelay(),
    }


class TemplatesService:
    """The template catalogue on one database."""

    def __init__(
        self,
        db: Database,
        library: Path | None = engine.LIBRARY_DIR,
        studio: Path | None = None,
    ) -> None:
        self.db = db
        self.library = library
        self.studio = studio
        self._stamp: Stamp | None = None

    def seed_templates(self) -> SyncResult:
        """Load every template file now (at start: whatever the files' stamp)."""
        return self.sync(force=True)

    def sync(self, force: bool = False) -> SyncResult:
        """Load the template files into the database when they changed since
        the last look (or `force`). A file that fails is reported (WARNING with
        its traceback, `template_files`, the templates it gave keep their last
        good version with the error shown); the others go on."""
        stamp = _stamp((self.library, self.studio))
        if not force and stamp == self._stamp:
            return SyncResult()
        catalogue = engine.load_catalogue(self.library, self.studio)
        with self.db.transaction() as session:
            repo.lock_template_catalogue(session)
            current = repo.template_states(session)
            result = self._write(session, catalogue, current)
            files = {
                path: (catalogue.problems.get(path, ""), ids)
                for path, ids in catalogue.files.items()
            }
            repo.replace_template_files(session, files)
            if result.changed:
                publish_change(
                    session,
                    topics.TEMPLATES_CHANGED,
                    {
                        "saved": list(result.saved),
                        "broken": list(result.broken),
                        "removed": list(result.removed),
                    },
                )
        self._stamp = stamp
        if result.changed:
            _LOG.info(
                "templates: %d loaded or changed, %d with a broken file, %d removed",
                len(result.saved),
                len(result.broken),
                len(result.removed),
            )
        return result

    @staticmethod
    def _write(session: Any, catalogue: engine.Catalogue, current: dict[int, Any]) -> SyncResult:
        saved: list[int] = []
        for template_id, entry in sorted(catalogue.templates.items()):
            values = template_values(entry)
            row = current.get(template_id)
            if (
                row is not None
                and row.version == entry.version
                and row.file_path == entry.file_path
                and not row.load_error
                and row.enabled
                and row.builtin == entry.builtin
            ):
                continue
            repo.save_loaded_template(session, values, entry.source)
            saved.append(template_id)
        broken: list[int] = []
        removed: list[int] = []
        for template_id, row in sorted(current.items()):
            if template_id in catalogue.templates or not row.file_path:
                continue
            problem = catalogue.problems.get(row.file_path)
            if problem is not None:
                # The file broke: keep running the last good version, say why.
                if row.load_error != problem:
                    repo.mark_templates(session, [template_id], problem, enabled=row.enabled)
                    broken.append(template_id)
            elif row.enabled:
                why = (
                    f"{row.file_path} no longer defines template {template_id}"
                    if row.file_path in catalogue.files
                    else f"{row.file_path} no longer exists"
                )
                repo.mark_templates(session, [template_id], why, enabled=False)
                removed.append(template_id)
        return SyncResult(tuple(saved), tuple(broken), tuple(removed), tuple(catalogue.problems))

    def list_templates(
        self, platform: str | None, page_size: int, page_token: str
    ) -> Page[TemplateRecord]:
        request = page_request(page_size, page_token, {"platform": platform})
        with self.db.transaction() as session:
            rows = repo.list_templates(session, platform, request.after, request.size + 1)
        return page_of(rows, request, lambda r: r.id)

    def file_problems(self) -> list[tuple[str, str]]:
        """The template files that failed to load: (path, error)."""
        with self.db.transaction() as session:
            return [(r.file_path, r.error) for r in repo.template_file_problems(session)]

    def get_template(self, template_id: int) -> TemplateRecord:
        with self.db.transaction() as session:
            row = repo.get_template(session, template_id)
        if row is None:
            raise NotFound(f"template_id: template {template_id} does not exist")
        return row

    def source(self, template_id: int, version: str) -> tuple[str, str]:
        """(source, file path) of one version of a template's code."""
        with self.db.transaction() as session:
            row = repo.template_source(session, template_id, version)
        if row is None:
            raise NotFound(f"template {template_id} has no version {version!r}")
        return str(row.source), str(row.file_path)
