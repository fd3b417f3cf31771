"""Template code for the agents: one version of a template's file, by id and
version (AgentService.GetTemplateSource). The jobs domain owns the versions
(template_versions); agents fetch each version once and cache it."""

from __future__ import annotations

from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument, NotFound
from muster_services.jobs import for_nodes

# Versions are short hashes of the file's text (muster_gateway.template_engine.version_of).
MAX_VERSION_LENGTH = 128


def template_source(db: Database, template_id: int, version: str) -> for_nodes.TemplateSource:
    if template_id <= 0:
        raise InvalidArgument(f"template_id must be positive, got {template_id}")
    if not version.strip() or len(version) > MAX_VERSION_LENGTH or not version.isprintable():
        raise InvalidArgument(f"version: 1 to {MAX_VERSION_LENGTH} printable characters")
    with db.read_session() as session:
        found = for_nodes.template_source(session, template_id, version)
    if found is None:
        raise NotFound(f"template {template_id} has no version {version!r}")
    return found
