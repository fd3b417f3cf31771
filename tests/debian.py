"""Debian packages the tests need (slapd, blender, ffmpeg...), installed when
missing: as root, with apt-get, once for every pytest-xdist worker.

`ensure_packages(...)` answers "" when the packages are there (already, or
installed now) and otherwise the reason to skip the test with (not root, no
apt-get, the install failed: with apt's last lines).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# One lock for every worker and every checkout on the machine: apt-get runs
# once at a time, and a worker that waited finds the packages installed.
LOCK_FILE = Path(tempfile.gettempdir()) / "muster-tests-apt.lock"
INSTALL_TIMEOUT_SECONDS = 900
# Where Debian puts daemons, often not on a user's PATH (slapd).
_SYSTEM_BIN = ("/usr/sbin", "/sbin")
# The dashboard's browser tests and bench: Debian's Chromium and its WebDriver.
BROWSER_PACKAGES = ("chromium", "chromium-driver")
BROWSER_COMMANDS = ("chromium", "chromedriver")
_MISSING_PACKAGE = ("Unable to locate package", "has no installation candidate", "Failed to fetch")


def find_command(name: str) -> str | None:
    """The path of a command on PATH or in the system folders, if any."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SYSTEM_BIN])
    return shutil.which(name, path=path)


def installed(packages: Sequence[str]) -> bool:
    """Whether dpkg has every one of `packages` installed."""
    if not shutil.which("dpkg-query"):
        return False
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    statuses = result.stdout.split()
    return result.returncode == 0 and statuses == ["installed"] * len(packages)


def _present(packages: Sequence[str], commands: Sequence[str]) -> bool:
    if commands:
        return all(find_command(c) for c in commands)
    return installed(packages)


@contextmanager
def _apt_lock() -> Iterator[None]:
    with LOCK_FILE.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apt_get(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Waits for another apt or dpkg on the machine instead of failing at once.
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *arguments]
    try:
        return subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as timeout:
        output = timeout.stdout or ""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        return subprocess.CompletedProcess(
            command, -1, text, f"timed out after {INSTALL_TIMEOUT_SECONDS} s"
        )


def _last_lines(result: subprocess.CompletedProcess[str], count: int = 5) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return " | ".join(lines[-count:])


def ensure_packages(
    packages: Sequence[str], *, commands: Sequence[str] = (), preseed: str = ""
) -> str:
    """Make sure the Debian `packages` are installed, and `commands` (program
    names) found; "" when they are, else why not. `preseed` is given to
    debconf-set-selections before installing (answers a package's questions).
    Commands found already are enough, so a machine that has the programs
    from elsewhere needs neither dpkg nor apt."""
    if _present(packages, commands):
        return ""
    names = " ".join(packages)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{names} not installed and cannot be installed here (needs root and apt-get)"
    with _apt_lock():
        if _present(packages, commands):  # another worker installed them meanwhile
            return ""
        if preseed and shutil.which("debconf-set-selections"):
            subprocess.run(
                ["debconf-set-selections"], input=preseed, text=True, check=False, timeout=60
            )
        install = ("install", "-y", "--no-install-recommends", *packages)
        result = _apt_get(*install)
        if result.returncode != 0 and any(
            m in result.stdout + result.stderr for m in _MISSING_PACKAGE
        ):
            # The package index is missing or stale: refresh it once, try again.
            update = _apt_get("update")
            if update.returncode != 0:
                return (
                    f"{names} could not be installed: apt-get update failed: {_last_lines(update)}"
                )
            result = _apt_get(*install)
        if result.returncode != 0:
            return f"{names} could not be installed: {_last_lines(result)}"
    missing = [c for c in commands if not find_command(c)]
    if missing:
        return f"{names} installed, but {', '.join(missing)} not found"
    return ""
