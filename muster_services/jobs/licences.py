"""Licence and delay groups of templates: the rules (Muster's
setLicensesGroup/setMaximumLicenses and setDelayGroup/setDelay).

- A licence group: the templates naming it share one farm-wide count of
  chunks on nodes (live assignments: assigned, not yet started by the agent,
  or running; each holds a licence). The scheduler never starts a chunk of
  one of them while the count is at the group's cap. Templates of a group
  with different maxima: the cap is the smallest non-zero one (the safest);
  0 everywhere = no cap.
- A delay group: chunk starts of its templates are at least the delay apart,
  farm-wide: at most one start per group per delay. Templates with different
  delays: the largest. 0 = no delay.
- An administrator's override (SetTemplateGroupLimit) replaces the files'
  value; it may name a group no template names yet. 0 = no cap / no delay.

Group names compare exactly (case matters), as the files spell them. The SQL
is at the end of muster_services/jobs/store.py; the scheduler asks a TickBudget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from muster_services.core.errors import InvalidArgument

LICENSES = "licenses"
DELAY = "delay"
KINDS = (LICENSES, DELAY)


def file_value(kind: str, values: Sequence[int]) -> int:
    """The limit the template files give a group: the smallest non-zero
    maximum of a licence group, the largest delay of a delay group."""
    if kind == LICENSES:
        return min((v for v in values if v > 0), default=0)
    return max((v for v in values if v > 0), default=0)


@dataclass(frozen=True)
class GroupState:
    """A group as the database has it now."""

    kind: str
    name: str
    template_ids: tuple[int, ...]
    file_value: int
    override: int | None
    running: int
    last_started_at: datetime | None
    seconds_since_start: float | None

    @property
    def limit(self) -> int:
        """The effective limit (0 = none): the override if set, else the files'."""
        return self.file_value if self.override is None else self.override

    @classmethod
    def of(cls, row: Any) -> GroupState:
        since = row.seconds_since_start
        return cls(
            kind=row.kind,
            name=row.name,
            template_ids=tuple(int(t) for t in row.template_ids),
            file_value=file_value(row.kind, [int(v) for v in row.template_values]),
            override=row.limit_override,
            running=int(row.running),
            last_started_at=row.last_started_at,
            seconds_since_start=None if since is None else float(since),
        )


def checked_limit(kind: str, name: str, value: int | None) -> None:
    """SetTemplateGroupLimit's input rules (INVALID_ARGUMENT)."""
    if kind not in KINDS:
        raise InvalidArgument(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if not name.strip():
        raise InvalidArgument("name: must not be empty")
    if value is not None and value < 0:
        raise InvalidArgument(f"value: must be 0 (no limit) or more, got {value}")


class TickBudget:
    """What one scheduler tick may still start, per template: the licences
    left in its licence group and whether its delay group may start a chunk.
    A chunk planned in the tick counts at once (consume)."""

    def __init__(self, groups: Iterable[GroupState] = ()) -> None:
        self._licence_group: dict[int, str] = {}
        self._licences_left: dict[str, int] = {}
        self._delay_group: dict[int, str] = {}
        # Delay group -> chunks it may still start in this tick (None = any).
        self._starts_left: dict[str, int | None] = {}
        # Delay groups that started a chunk in this tick (their last start).
        self.delay_groups_started: set[str] = set()
        for group in groups:
            if group.kind == LICENSES and group.limit > 0:
                self._licences_left[group.name] = max(group.limit - group.running, 0)
                self._licence_group.update(dict.fromkeys(group.template_ids, group.name))
            elif group.kind == DELAY:
                # Every delay group is tracked, so its last start is kept even
                # while its delay is 0 (a delay set later applies at once).
                since = group.seconds_since_start
                if group.limit <= 0:
                    self._starts_left[group.name] = None
                else:
                    ready = since is None or since >= group.limit
                    self._starts_left[group.name] = 1 if ready else 0
                self._delay_group.update(dict.fromkeys(group.template_ids, group.name))

    def __bool__(self) -> bool:
        """Whether any template is in a group."""
        return bool(self._licence_group or self._delay_group)

    def allowance(self, template_id: int | None, wanted: int) -> int:
        """How many of `wanted` chunks of a template may start now."""
        if template_id is None:
            return wanted
        licence = self._licence_group.get(template_id)
        if licence is not None:
            wanted = min(wanted, self._licences_left[licence])
        delay = self._delay_group.get(template_id)
        if delay is not None:
            starts = self._starts_left[delay]
            if starts is not None:
                wanted = min(wanted, starts)
        return max(wanted, 0)

    def consume(self, template_id: int | None, started: int) -> None:
        """`started` chunks of the template were planned in this tick."""
        if template_id is None or started <= 0:
            return
        licence = self._licence_group.get(template_id)
        if licence is not None:
            self._licences_left[licence] -= started
        delay = self._delay_group.get(template_id)
        if delay is not None:
            self.delay_groups_started.add(delay)
            starts = self._starts_left[delay]
            if starts is not None:
                self._starts_left[delay] = starts - started
