"""Repository path mapping: rewrite a path for the platform of a render node.

One pure function, no database and no I/O: the render-node agent imports it to
translate job attributes flagged `substitute_paths`, with the repositories and
the `substitution_paths_case_sensitive` setting it got from the dispatcher.

Rules (docs/admin.md shows examples):
- A repository lists one storage location as Windows, Linux and macOS see it.
  A path matches a repository prefix when it starts with it on a separator
  boundary: `P:\\proj` matches `P:\\proj\\a.ma` and `P:\\proj`, never
  `P:\\projects\\a.ma`.
- Backslashes and slashes are the same separator when matching, and trailing
  separators of a prefix do not count (`/mnt/projects/` == `/mnt/projects`).
- Of every prefix of every repository that matches, the longest wins (a
  repository for `P:\\proj\\shots` beats one for `P:\\proj`).
- The matched prefix is replaced by the repository's path for the target
  platform, and the rest of the path takes that platform's separator. A
  repository without a path for the target platform cannot map, so it never
  matches.
- Case-insensitive matching (the default) compares case-folded text; the
  rest of the path keeps its case.
- No match: the path comes back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PLATFORMS = ("windows", "linux", "macos")


@dataclass(frozen=True)
class RepositoryPaths:
    """The paths of one repository, as the repositories table holds them."""

    windows_path: str = ""
    linux_path: str = ""
    macos_path: str = ""

    def for_platform(self, platform: str) -> str:
        return {"windows": self.windows_path, "linux": self.linux_path, "macos": self.macos_path}[
            platform
        ]


def _normal(path: str) -> str:
    """A path with one separator ("/") and no trailing separator."""
    return path.replace("\\", "/").rstrip("/")


def _remainder(path: str, prefix: str, case_sensitive: bool) -> str | None:
    """What follows `prefix` in `path` (both normalised), or None if no match."""
    head = path[: len(prefix)]
    if (head != prefix) if case_sensitive else (head.casefold() != prefix.casefold()):
        return None
    rest = path[len(prefix) :]
    if rest and not rest.startswith("/"):
        return None  # P:/proj must not match P:/projects
    return rest


def map_path(
    path: str,
    repositories: Iterable[RepositoryPaths],
    target_platform: str,
    case_sensitive: bool = False,
) -> str:
    """`path` as a node of `target_platform` sees it (see the module rules)."""
    if target_platform not in PLATFORMS:
        raise ValueError(f"target_platform must be one of {', '.join(PLATFORMS)}")
    if not path:
        return path
    # Keep the path's own trailing separator: "P:\proj\" -> "/mnt/proj/".
    normal = path.replace("\\", "/")
    best: tuple[int, str, str] | None = None  # (prefix length, target, rest)
    for repository in repositories:
        target = repository.for_platform(target_platform)
        if not target:
            continue
        for source in (repository.for_platform(p) for p in PLATFORMS):
            if not source:
                continue
            prefix = _normal(source)
            rest = _remainder(normal, prefix, case_sensitive)
            if rest is not None and (best is None or len(prefix) > best[0]):
                best = (len(prefix), target, rest)
    if best is None:
        return path
    _, target, rest = best
    separator = "\\" if target_platform == "windows" else "/"
    joined = _normal(target) + rest
    # A root target ("/") mapping the prefix itself is the root, not "".
    return (joined or "/").replace("/", separator)
