from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from muster_services.core.settings import ENVIRONMENT_VARIABLES, Settings, SettingsError

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


def test_the_database_url_is_read_from_its_file(tmp_path: Path) -> None:
    url = "postgresql://dispatcher:s3cret%40x@db.example:5432/dispatcher"
    secret = tmp_path / "url"
    secret.write_text(url + "\n")  # as `kubectl create secret --from-file` keeps it
    settings = Settings.from_env({"MUSTER_DATABASE_URL_FILE": str(secret)})
    assert settings.database_url == url
    assert settings.database_url_file == secret


@pytest.mark.parametrize(
    ("content", "with_url", "message"),
    [
        (None, False, "No such file"),
        ("  \n", False, "is empty"),
        ("postgresql://a@b/c", True, "not both"),
    ],
)
def test_an_unusable_database_url_file_is_refused(
    tmp_path: Path, content: str | None, with_url: bool, message: str
) -> None:
    secret = tmp_path / "url"
    if content is not None:
        secret.write_text(content)
    env = {"MUSTER_DATABASE_URL_FILE": str(secret)}
    if with_url:
        env["MUSTER_DATABASE_URL"] = "postgresql://other@host/db"
    with pytest.raises(SettingsError, match="MUSTER_DATABASE_URL_FILE") as error:
        Settings.from_env(env)
    assert message in str(error.value)


def test_connection_limits_default_and_are_read() -> None:
    defaults = Settings.from_env({})
    assert (defaults.keepalive_seconds, defaults.max_connection_age_seconds) == (30.0, 1800.0)
    assert defaults.max_connection_age_grace_seconds == 30.0
    read = Settings.from_env(
        {
            "MUSTER_MAX_CONNECTION_AGE_SECONDS": "5",
            "MUSTER_MAX_CONNECTION_AGE_GRACE_SECONDS": "0",
            "MUSTER_KEEPALIVE_SECONDS": "10",
        }
    )
    assert (read.max_connection_age_seconds, read.max_connection_age_grace_seconds) == (5.0, 0.0)
    assert read.keepalive_seconds == 10.0
    with pytest.raises(SettingsError, match="MUSTER_MAX_CONNECTION_AGE_SECONDS"):
        Settings.from_env({"MUSTER_MAX_CONNECTION_AGE_SECONDS": "0.5"})
