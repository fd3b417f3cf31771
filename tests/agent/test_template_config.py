"""This node's template preferences and callback time limit: options, files,
environment, in their order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from muster_agent.config import DEFAULT_TEMPLATE_CALLBACK_SECONDS, ConfigError, load

BASE = ["--dispatcher", "farm:1"]


def test_no_preferences_and_the_default_time_limit() -> None:
    config = load(BASE, {})
    assert config.template_preferences == {}
    assert config.template_callback_seconds == DEFAULT_TEMPLATE_CALLBACK_SECONDS == 30.0


def test_layers_config_file_then_preferences_file_then_options(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.json"
    config_file.write_text(
        json.dumps(
            {
                "template_preferences": {
                    "1001": {"BLENDER_PATH": "/from/config", "THREADS": 4, "GPU": True},
                    "1002": {"X": "config"},
                },
                "template_callback_seconds": 12,
            }
        )
    )
    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps({"1001": {"BLENDER_PATH": "/from/file", "EXTRA": "file"}}))
    config = load(
        [
            *BASE,
            "--config",
            str(config_file),
            "--template-preferences",
            str(prefs),
            "--template-preference",
            "1001:BLENDER_PATH=/opt/blender/blender",
            "--template-preference",
            "7:PATH=a=b",
        ],
        {},
    )
    assert config.template_preferences == {
        1001: {
            "BLENDER_PATH": "/opt/blender/blender",
            "THREADS": "4",
            "GPU": "true",
            "EXTRA": "file",
        },
        1002: {"X": "config"},
        7: {"PATH": "a=b"},
    }
    assert config.template_callback_seconds == 12.0


def test_environment_fallbacks(tmp_path: Path) -> None:
    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps({"1001": {"BLENDER_PATH": "/env"}}))
    config = load(
        BASE,
        {"MUSTER_AGENT_TEMPLATE_PREFERENCES": str(prefs), "MUSTER_AGENT_TEMPLATE_TIMEOUT": "2.5"},
    )
    assert config.template_preferences == {1001: {"BLENDER_PATH": "/env"}}
    assert config.template_callback_seconds == 2.5
    assert load([*BASE, "--template-timeout", "9"], {}).template_callback_seconds == 9.0


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--template-preference", "BLENDER_PATH=/x"], "TEMPLATE_ID:NAME=VALUE"),
        (["--template-preference", "1001:BLENDER_PATH"], "TEMPLATE_ID:NAME=VALUE"),
        (["--template-preference", "abc:X=1"], "TEMPLATE_ID:NAME=VALUE"),
        (["--template-preference", "0:X=1"], "positive"),
        (["--template-timeout", "0"], "0..3600"),
        (["--template-timeout", "soon"], "0..3600"),
    ],
)
def test_bad_values_are_refused_with_a_reason(argv: list[str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load([*BASE, *argv], {})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2]", "object of template ids"),
        ('{"blender": {"X": "1"}}', "not a template id"),
        ('{"1001": ["X"]}', "must map names to values"),
        ('{"1001": {"X": null}}', "must map names to values"),
        ("{nope", "not valid JSON"),
    ],
)
def test_a_bad_preferences_file_is_refused(tmp_path: Path, content: str, reason: str) -> None:
    prefs = tmp_path / "prefs.json"
    prefs.write_text(content)
    with pytest.raises(ConfigError, match=reason):
        load([*BASE, "--template-preferences", str(prefs)], {})
