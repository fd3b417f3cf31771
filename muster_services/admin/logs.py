"""The dispatcher log (logAddMessage, logAddInternalMessage, logClear), the
per-day activity and action logs, and the bus consumer that writes them.

Services write only their own tables, so the action and activity logs are
built from the bus: `record_event` runs in the durable consumer
"admin-action-log" and turns each event into its log lines in the same
transaction that stores the consumer's position (exactly once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.orm import Session

from muster_services.admin import domain, topics
from muster_services.admin import store as repo
from muster_services.admin.tables import ACTION_OUTCOMES
from muster_services.core.bus import Event, publish_change
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from muster_services.core.paging import Page, page_request


@dataclass(frozen=True)
class LogEntryView:
    time: datetime
    level: str
    message: str
    source: str
    internal: bool


@dataclass(frozen=True)
class LogFileView:
    name: str
    size_bytes: int
    modified: datetime


def _call_outcome(payload: Any) -> str:
    outcome = str(payload.get("outcome", "")) if "status_code" in payload else ""
    return outcome if outcome in ACTION_OUTCOMES else "succeeded"


def _lines(event: Event) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The action-log and activity-log rows of one bus event (either may be None)."""
    action = domain.action_entry(event.topic, event.payload)
    activity = domain.activity_entry(event.topic, event.payload)
    # The time and details are the event's own (read with it: admin/store.py).
    return (
        None
        if action is None
        else {
            "event_id": event.id,
            "user_name": action.user_name,
            "peer": action.peer,
            "action": action.action,
            "target": action.target,
            # Refused and failed calls (muster_services/core/audit.py) say how they
            # ended, with a status code; another event's "outcome" (a chunk
            # run's: killed, timed_out...) is not the outcome of a call.
            "outcome": _call_outcome(event.payload),
            "status_code": str(event.payload.get("status_code", "OK")),
        },
        None
        if activity is None
        else {
            "event_id": event.id,
            "category": activity.category,
            "message": activity.message,
            "job_id": activity.job_id,
            "node_id": activity.node_id,
        },
    )


def record_event(session: Session, event: Event) -> None:
    """Write the log lines of one bus event now."""
    action, activity = _lines(event)
    repo.add_actions(session, [action] if action else [])
    repo.add_activities(session, [activity] if activity else [])


_PENDING = "admin_log_lines"


def record_event_batched(session: Session, event: Event) -> None:
    """record_event for the durable consumer: the lines of a whole batch are
    written with one statement per table just before the batch commits (in
    the same transaction as the consumer's position), instead of two
    round trips per event."""
    pending: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = ([], [])
        sqlalchemy_event.listen(session, "before_commit", _flush_pending, once=True)
    action, activity = _lines(event)
    if action:
        pending[0].append(action)
    if activity:
        pending[1].append(activity)


def _flush_pending(session: Session) -> None:
    actions, activities = session.info.pop(_PENDING, ([], []))
    repo.add_actions(session, actions)
    repo.add_activities(session, activities)


class LogsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- the dispatcher log --------------------------------------------------------------------

    def add_message(self, message: str, level: str, internal: bool) -> int:
        domain.check_log_message(message)
        if level not in domain.LOG_LEVELS:
            raise InvalidArgument(f"level: must be one of {', '.join(domain.LOG_LEVELS)}")
        with self.db.transaction() as session:
            entry_id = repo.add_log_message(
                session, level, current_caller().label, message, internal
            )
            publish_change(
                session,
                topics.LOG_MESSAGE_ADDED,
                {"log_entry_id": entry_id, "level": level, "internal": internal},
            )
            return entry_id

    def clear(self) -> int:
        with self.db.transaction() as session:
            deleted = repo.clear_log_messages(session)
            publish_change(session, topics.LOG_CLEARED, {"deleted_count": deleted})
            return deleted

    def list_entries(
        self, page_size: int, page_token: str, min_level: str, include_internal: bool
    ) -> Page[LogEntryView]:
        """Newest first. Internal entries only on request, and only for
        administrators: a user asking for them gets the others."""
        include_internal = include_internal and current_caller().is_administrator
        if min_level and min_level not in domain.LOG_LEVELS:
            raise InvalidArgument(f"min_level: must be one of {', '.join(domain.LOG_LEVELS)}")
        levels = list(domain.LOG_LEVELS[domain.LOG_LEVELS.index(min_level) :]) if min_level else []
        filters = {"min_level": min_level, "internal": include_internal}
        page = page_request(page_size, page_token, filters)
        if page.after is not None and not isinstance(page.after, int):
            raise InvalidArgument("page_token is not a token this service issued")
        with self.db.transaction() as session:
            rows = repo.log_messages_page(
                session, page.after, page.size + 1, levels, include_internal
            )
        more = len(rows) > page.size
        rows = rows[: page.size]
        return Page(
            [LogEntryView(r.logged_at, r.level, r.message, r.source, r.internal) for r in rows],
            page.next_token(rows[-1].id) if more else "",
        )

    # --- per-day logs ("files") ------------------------------------------------------------------

    def list_files(self, kind: str, page_size: int, page_token: str) -> Page[LogFileView]:
        page = page_request(page_size, page_token, {"kind": kind})
        before: date | None = None
        if page.after is not None:
            try:
                before = date.fromisoformat(str(page.after))
            except ValueError:
                raise InvalidArgument("page_token is not a token this service issued") from None
        with self.db.transaction() as session:
            rows = repo.log_days(session, kind, before, page.size + 1)
        more = len(rows) > page.size
        rows = rows[: page.size]
        return Page(
            [LogFileView(domain.log_file_name(kind, r.day), int(r.size), r.modified) for r in rows],
            page.next_token(rows[-1].day.isoformat()) if more else "",
        )

    def read_file(self, kind: str, name: str) -> str:
        day = domain.log_file_day(kind, name)
        with self.db.transaction() as session:
            content = repo.log_day_content(session, kind, day)
        if content is None:
            raise NotFound(f"name: no {kind} log named {name!r}")
        return content

    def remove_file(self, kind: str, name: str) -> int:
        day = domain.log_file_day(kind, name)
        with self.db.transaction() as session:
            if day >= repo.utc_today(session):
                raise FailedPrecondition(
                    f"name: {name!r} is the log being written today; it can be removed tomorrow"
                )
            deleted = repo.delete_log_day(session, kind, day)
            if not deleted:
                raise NotFound(f"name: no {kind} log named {name!r}")
            publish_change(
                session,
                topics.LOG_FILE_REMOVED,
                {"log": kind, "name": name, "deleted_count": deleted},
            )
            return deleted
