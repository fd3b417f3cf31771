"""A chunk's progress read from its log lines (the template's patterns).

Its own module, apart from the template engine (muster_gateway/template_engine.py,
which exports it too): the render-node agent reads progress in its own
process and must not load the engine and the MTemplateAPI classes for it,
which only its template host needs (docs/agent.md, Memory).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class ProgressParser:
    """A chunk's progress from its log lines, by the template's progress and
    frame-done patterns (MTemplate.addProgressRegex / addFrameDoneRegex).

    With frame-done patterns the chunk's progress is
    (frames done + current frame's percent / 100) / frames of the chunk;
    without, a progress line's percent (or done/total, or a `frame` group's
    count of the chunk's frames) is the chunk's."""

    def __init__(
        self, progress: Iterable[str], frame_done: Iterable[str], frames_in_chunk: int
    ) -> None:
        self._progress = [re.compile(p) for p in progress]
        self._frame_done = [re.compile(p) for p in frame_done]
        self._frames = max(1, frames_in_chunk)
        self._done = 0
        self._current = 0.0
        self.value: float | None = None

    @property
    def active(self) -> bool:
        return bool(self._progress or self._frame_done)

    def feed(self, line: str) -> float | None:
        """The new progress (0-100) when this line changes it, else None."""
        changed = False
        for pattern in self._frame_done:
            if pattern.search(line):
                self._done = min(self._frames, self._done + 1)
                self._current = 0.0
                changed = True
                break
        else:
            for pattern in self._progress:
                found = pattern.search(line)
                if found is None:
                    continue
                percent = _percent(found, self._frames)
                if percent is None:
                    continue
                self._current = percent
                changed = True
                break
        if not changed:
            return None
        if self._frame_done:
            value = 100.0 * (self._done + self._current / 100.0) / self._frames
        else:
            value = self._current
        value = max(0.0, min(100.0, value))
        if self.value is not None and value <= self.value:
            return None
        self.value = value
        return value


def _percent(found: re.Match[str], frames: int) -> float | None:
    """A progress line's percent: a group named `frame` counts frames of the
    chunk written so far (ffmpeg's `frame=  24`); else one group is a
    percent, two are done and total."""
    try:
        if "frame" in found.re.groupindex and found.group("frame") is not None:
            return 100.0 * float(found.group("frame")) / frames
    except ValueError:
        return None
    groups = [g for g in found.groups() if g is not None]
    try:
        if len(groups) >= 2:
            total = float(groups[1])
            return 100.0 * float(groups[0]) / total if total else None
        if groups:
            return float(groups[0])
    except ValueError:
        return None
    return None


__all__ = ["ProgressParser"]
