"""Every channel the dispatcher opens balances round robin over the addresses
its target resolves to (muster_gateway/tls.py), keeping a service config the
caller gives (the facade's retry policy)."""

from __future__ import annotations

import json

from muster_gateway.connection import CHANNEL_OPTIONS
from muster_gateway.tls import ROUND_ROBIN, balanced


def test_a_channel_without_a_service_config_gets_round_robin() -> None:
    options = balanced([("grpc.enable_retries", 1)])
    assert options[0] == ("grpc.enable_retries", 1)
    [config] = [json.loads(v) for k, v in options if k == "grpc.service_config"]
    assert config == ROUND_ROBIN == {"loadBalancingConfig": [{"round_robin": {}}]}


def test_a_given_service_config_keeps_its_settings_and_gains_round_robin() -> None:
    options = balanced(CHANNEL_OPTIONS)
    [config] = [json.loads(v) for k, v in options if k == "grpc.service_config"]
    [given] = [json.loads(str(v)) for k, v in CHANNEL_OPTIONS if k == "grpc.service_config"]
    assert config == {**given, **ROUND_ROBIN}
    assert len(options) == len(CHANNEL_OPTIONS)


def test_a_policy_the_caller_names_is_kept() -> None:
    own = json.dumps({"loadBalancingConfig": [{"pick_first": {}}]})
    [(_, config)] = balanced([("grpc.service_config", own)])
    assert json.loads(config) == json.loads(own)
