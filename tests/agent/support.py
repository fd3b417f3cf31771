"""Helpers for the agent's tests."""

from __future__ import annotations

import asyncio
import time
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


def gone(pid: int, within: float = 2.0) -> bool:
    """Whether a process is dead, or dies within a moment (a killed process
    closes its pipes a little before the kernel marks it a zombie)."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pids_in(text: str) -> list[int]:
    return [int(word) for word in text.split() if word.isdigit()]
