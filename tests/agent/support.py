"""Helpers for the agent's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Callable[[], Coroutine[Any, Any, T]], timeout: float = 20) -> T:
    """Run an async test body on a fresh event loop, with a safety timeout."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine(), timeout)

    return asyncio.run(bounded())


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def pids_in(text: str) -> list[int]:
    return [int(word) for word in text.split() if word.isdigit()]
