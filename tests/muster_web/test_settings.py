"""The dashboard's settings: defaults, what each variable changes, refusals."""

from __future__ import annotations

import pytest

from muster_web.settings import DEFAULT_LISTEN, WebSettings, WebSettingsError, split_listen


def test_defaults_serve_on_loopback_with_a_plain_cookie() -> None:
    settings = WebSettings.from_env({})
    assert settings == WebSettings(DEFAULT_LISTEN, cookie_secure=False, public_url="")
    assert split_listen(settings.listen) == ("127.0.0.1", 50080)
    assert settings.enabled


def test_an_https_public_url_makes_the_cookie_secure_unless_told_otherwise() -> None:
    env = {"MUSTER_WEB_PUBLIC_URL": "https://farm.example/dash/"}
    settings = WebSettings.from_env(env)
    assert settings.cookie_secure and settings.public_url == "https://farm.example/dash"
    assert not WebSettings.from_env({**env, "MUSTER_WEB_COOKIE_SECURE": "0"}).cookie_secure
    assert WebSettings.from_env({"MUSTER_WEB_COOKIE_SECURE": "yes"}).cookie_secure
    assert not WebSettings.from_env({"MUSTER_WEB": "0"}).enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MUSTER_WEB_LISTEN", "8080"),
        ("MUSTER_WEB_LISTEN", "host:99999"),
        ("MUSTER_WEB_LISTEN", ":80"),
        ("MUSTER_WEB_COOKIE_SECURE", "maybe"),
        ("MUSTER_WEB", "2"),
    ],
)
def test_unusable_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(WebSettingsError, match=name):
        WebSettings.from_env({name: value})


def test_ipv6_listen_addresses() -> None:
    assert split_listen("[::1]:8080") == ("::1", 8080)
