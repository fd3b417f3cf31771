from __future__ import annotations

import json

from muster_agent.discovery import answer, discovery_address


def test_a_beacon_gets_the_agent_s_identity_and_anything_else_nothing() -> None:
    reply = answer(b'{"muster": "scan", "scan_id": "7"}', {"host_name": "box", "instances": 2})
    assert reply is not None
    assert json.loads(reply) == {
        "muster": "here",
        "scan_id": "7",
        "host_name": "box",
        "instances": 2,
    }
    for junk in (b"", b"hello", b"[]", b'{"muster": "attack"}', b" " * 5000):
        assert answer(junk, {"host_name": "box"}) is None


def test_the_discovery_address_defaults_and_can_be_turned_off() -> None:
    assert discovery_address({}) == ("0.0.0.0", 50052)
    assert discovery_address({"MUSTER_AGENT_DISCOVERY": "127.0.0.1:6000"}) == ("127.0.0.1", 6000)
    assert discovery_address({"MUSTER_AGENT_DISCOVERY": "off"}) is None
