"""Configuration: options, environment fallbacks, the JSON file, the client file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from muster_agent.config import DEFAULT_KILL_GRACE_SECONDS, ConfigError, load, normalise_address


def test_options_win_over_the_environment(tmp_path: Path) -> None:
    env = {
        "MUSTER_DISPATCHER": "env-host:1",
        "MUSTER_AGENT_INSTANCES": "3",
        "MUSTER_AGENT_NAME": "env-name",
        "MUSTER_AGENT_DIR": str(tmp_path / "env"),
        "MUSTER_AGENT_LOG_LEVEL": "error",
    }
    config = load(
        [
            "--dispatcher",
            "farm:6000",
            "--instances",
            "2",
            "--name",
            "render-07",
            "--work-dir",
            str(tmp_path / "cli"),
            "--log-level",
            "debug",
        ],
        env,
    )
    assert config.dispatcher == "farm:6000"
    assert config.instances == 2
    assert config.name == "render-07"
    assert config.work_dir == tmp_path / "cli"
    assert config.log_level == "debug"


def test_the_environment_fills_in_missing_options(tmp_path: Path) -> None:
    env = {
        "MUSTER_DISPATCHER": "env-host:7000",
        "MUSTER_AGENT_INSTANCES": "3",
        "MUSTER_AGENT_NAME": "env-name",
        "MUSTER_AGENT_DIR": str(tmp_path),
        "MUSTER_AGENT_LOG_LEVEL": "WARNING",
    }
    config = load([], env)
    assert (config.dispatcher, config.instances, config.name) == ("env-host:7000", 3, "env-name")
    assert config.work_dir == tmp_path
    assert config.log_level == "warning"


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load(["--dispatcher", "farm"], {})
    assert config.dispatcher == "farm:50051"
    assert config.instances == 1
    assert config.name == socket.gethostname()
    assert config.work_dir == tmp_path / ".local" / "share" / "muster-agent"
    assert config.system_events == {}
    assert config.kill_grace_seconds == DEFAULT_KILL_GRACE_SECONDS
    assert config.log_level == "info"


def test_the_address_falls_back_to_the_client_file_of_a_local_dispatcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client_file = tmp_path / "client.json"
    client_file.write_text(json.dumps({"address": "127.0.0.1:45678"}))
    monkeypatch.setenv("MUSTER_CLIENT_CONFIG", str(client_file))
    assert load([], {}).dispatcher == "127.0.0.1:45678"
    client_file.unlink()
    with pytest.raises(ConfigError, match="no dispatcher address"):
        load([], {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("farm", "farm:50051"),
        ("farm:7", "farm:7"),
        ("10.0.0.1:50051", "10.0.0.1:50051"),
        ("[::1]", "[::1]:50051"),
        ("[::1]:9000", "[::1]:9000"),
        ("dns:///dispatcher:50051", "dns:///dispatcher:50051"),
    ],
)
def test_addresses(given: str, expected: str) -> None:
    assert normalise_address(given) == expected


@pytest.mark.parametrize("bad", ["", "farm:port", ":50051"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalise_address(bad)


@pytest.mark.parametrize("instances", ["0", "65", "two"])
def test_instances_must_be_a_sensible_number(instances: str) -> None:
    with pytest.raises(ConfigError, match="--instances"):
        load(["--dispatcher", "farm:1", "--instances", instances], {})


def test_the_config_file_gives_system_events_and_the_kill_grace(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(
        json.dumps(
            {
                "system_events": {
                    "shutdown": ["systemctl", "poweroff"],
                    "reboot": "systemctl reboot --message 'farm maintenance'",
                },
                "kill_grace_seconds": 12,
            }
        )
    )
    config = load(["--dispatcher", "farm:1", "--config", str(path)], {})
    assert config.system_events == {
        "shutdown": ["systemctl", "poweroff"],
        "reboot": ["systemctl", "reboot", "--message", "farm maintenance"],
    }
    assert config.kill_grace_seconds == 12.0
    from_env = load(["--dispatcher", "farm:1"], {"MUSTER_AGENT_CONFIG": str(path)})
    assert from_env.system_events == config.system_events


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "top level must be an object"),
        ('{"system_events": {"hibernate": "x"}}', "unknown system event 'hibernate'"),
        ('{"system_events": {"reboot": ""}}', "command of reboot is empty"),
        ('{"system_events": {"reboot": 5}}', "must be a string or a string list"),
        ('{"kill_grace_seconds": -1}', "kill_grace_seconds"),
        ('{"kill_grace_seconds": true}', "kill_grace_seconds"),
        ('{"pools": ["a"]}', "unknown keys pools"),
    ],
)
def test_a_bad_config_file_is_refused_with_a_reason(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "agent.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(["--dispatcher", "farm:1", "--config", str(path)], {})


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(["--dispatcher", "farm:1", "--config", str(tmp_path / "none.json")], {})


def test_pools_come_from_repeated_options_or_the_environment() -> None:
    config = load(["--dispatcher", "farm:1", "--pool", "gpu", "--pool", " fast ", "--pool", "gpu"])
    assert config.pools == ("gpu", "fast")
    config = load(["--dispatcher", "farm:1"], {"MUSTER_AGENT_POOLS": "a, b,,c"})
    assert config.pools == ("a", "b", "c")
    assert load(["--dispatcher", "farm:1"], {}).pools == ()


@pytest.mark.parametrize("pool", ["x" * 256, "tab\there"])
def test_unusable_pool_names_are_refused(pool: str) -> None:
    with pytest.raises(ConfigError, match="--pool"):
        load(["--dispatcher", "farm:1", "--pool", pool], {})
