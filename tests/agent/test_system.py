"""Host facts and the priority mapping."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from muster_agent.system import (
    NICE_VALUES,
    UsageMeter,
    current_platform,
    host_facts,
    nice_value,
    release_free_memory,
    set_group_priority,
)
from muster_proto.common.v1 import common_pb2


def test_priorities_map_to_the_nice_values_of_common_proto() -> None:
    assert NICE_VALUES == {
        common_pb2.PROCESS_PRIORITY_IDLE: 19,
        common_pb2.PROCESS_PRIORITY_BELOW_NORMAL: 10,
        common_pb2.PROCESS_PRIORITY_NORMAL: 0,
        common_pb2.PROCESS_PRIORITY_ABOVE_NORMAL: -5,
        common_pb2.PROCESS_PRIORITY_HIGH: -10,
    }
    assert nice_value(common_pb2.PROCESS_PRIORITY_UNSPECIFIED) is None


def test_unspecified_priority_changes_nothing() -> None:
    before = os.getpriority(os.PRIO_PGRP, 0)
    set_group_priority(os.getpgrp(), common_pb2.PROCESS_PRIORITY_UNSPECIFIED)
    assert os.getpriority(os.PRIO_PGRP, 0) == before


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux facts")
def test_host_facts_describe_this_machine() -> None:
    facts = host_facts("render-07", "127.0.0.1:50051")
    assert facts.host_name == "render-07"
    assert facts.platform == current_platform() == common_pb2.PLATFORM_LINUX
    assert facts.cpu_cores == os.cpu_count()
    assert facts.memory_bytes > 1 << 28
    assert facts.os_version
    assert facts.ip_address.count(".") == 3
    if facts.mac_address:
        assert len(facts.mac_address.split(":")) == 6
    meter = UsageMeter()
    assert 0 <= meter.cpu_percent() <= 100
    assert 0 < meter.memory_used() < facts.memory_bytes


def test_an_unresolvable_dispatcher_still_gives_an_address() -> None:
    assert host_facts("n", "no-such-host.invalid:1").ip_address


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_goes_back_to_the_system() -> None:
    """Memory freed below a block still in use stays resident until trimmed."""
    probe = (
        "from muster_agent.system import release_free_memory\n"
        "def anon():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('RssAnon:'):\n"
        "            return int(line.split()[1]) // 1024\n"
        "blocks = [bytes(1000) + bytes([i % 256]) for i in range(40_000)]\n"
        "keep = bytes(1000) + b'top'  # above the freed ones: the heap cannot shrink\n"
        "del blocks\n"
        "freed = anon()\n"
        "assert release_free_memory()\n"
        "print(freed - anon(), len(keep))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    released, _ = map(int, done.stdout.split())
    assert released >= 20  # MB of the 40 freed


def test_release_free_memory_is_harmless_to_call_again() -> None:
    assert release_free_memory() is sys.platform.startswith("linux")
    assert release_free_memory() is sys.platform.startswith("linux")
