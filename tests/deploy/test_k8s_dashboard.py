"""The dashboard's manifest (deploy/k8s/web.yaml) against the program it runs:
its command line, its settings, its probe path, and the services it calls."""

from __future__ import annotations

import subprocess

import pytest

from muster_gateway.tls import ClientTLS
from muster_web.app import create_app
from muster_web.server import main
from muster_web.settings import WebSettings, split_listen
from muster_web.upstream import Upstream
from tests.deploy.test_k8s import OVERLAYS, Doc, _env, _of_kind, _port, kubectl


def _web() -> tuple[Doc, Doc]:
    deployment = _of_kind("Deployment")["muster-web"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_the_dashboard_runs_muster_web_on_its_http_port() -> None:
    _, container = _web()
    assert container["command"] == ["muster-web"]
    env = _env(container)
    settings = WebSettings.from_env(env)
    host, port = split_listen(settings.listen)
    assert host == "0.0.0.0" and port == _port(container, "http")
    assert settings.cookie_secure, "behind HTTPS the session cookie must be Secure"
    assert ClientTLS.from_env(env) is not None, "the services speak mutual TLS"
    # The probes ask a path the app serves.
    app = create_app(settings, Upstream("x:1"))
    paths = {getattr(route, "path", "") for route in app.routes}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == "http"


def test_the_dashboard_calls_each_service_and_its_cluster_ip_service_fronts_it() -> None:
    deployment, container = _web()
    env = _env(container)
    for service in ("JOBS", "NODES", "ADMIN"):
        # Every replica (round robin): tests/deploy/test_k8s.py checks the headless Services.
        assert env[f"MUSTER_{service}_ADDRESS"].startswith(f"dns:///muster-{service.lower()}-")
    front = _of_kind("Service")["muster-web"]
    assert front["spec"]["type"] == "ClusterIP"
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert front["spec"]["selector"].items() <= pods.items()
    [port] = front["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_muster_web_refuses_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "nowhere", "--dispatcher", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("muster-web: ") and "nowhere" in err and err.count("\n") == 1


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_kustomize_builds_the_dashboard_objects(overlay: str) -> None:
    built = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "name: muster-web" in built and "namespace: muster" in built
