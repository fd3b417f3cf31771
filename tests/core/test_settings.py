from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from services.core.settings import ENVIRONMENT_VARIABLES, Settings, SettingsError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_has_a_variable_and_is_documented() -> None:
    names = {f.name for f in fields(Settings)}
    assert names == set(ENVIRONMENT_VARIABLES)
    text = DOCS.read_text()
    for variable in ENVIRONMENT_VARIABLES.values():
        assert f"`{variable}`" in text, f"{variable} missing from docs/configuration.md"


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == ""
    assert settings.listen == "127.0.0.1:50051"
    assert settings.data_dir == Path(".data").resolve()


def test_values_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {"MUSTER_WORKER_THREADS": "4", "MUSTER_LOG_FORMAT": "JSON", "MUSTER_DATA_DIR": "/srv/x"}
    )
    assert settings.worker_threads == 4
    assert settings.log_format == "json"
    assert settings.data_dir == Path("/srv/x")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MUSTER_WORKER_THREADS", "many", "not an integer"),
        ("MUSTER_WORKER_THREADS", "0", "must be >= 1"),
        ("MUSTER_LOG_LEVEL", "loud", "must be one of"),
        ("MUSTER_SHUTDOWN_GRACE_SECONDS", "-1", "must be >= 0"),
    ],
)
def test_unusable_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=variable) as error:
        Settings.from_env({variable: value})
    assert message in str(error.value)
