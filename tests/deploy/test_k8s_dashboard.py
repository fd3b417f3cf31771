"""The dashboard's manifest (deploy/k8s/web.yaml) against the program it runs:
its command line, its settings, its probe path, and the services it calls."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from muster_web.app import create_app
from muster_web.server import main
from muster_web.settings import WebSettings, split_listen
from muster_web.upstream import Upstream
from services.core.tls import ClientTLS
from tests.deploy.test_k8s import K8S, Doc, _env, _of_kind, _port


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
        assert env[f"MUSTER_{service}_ADDRESS"].startswith(f"muster-{service.lower()}.")
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


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl (kustomize) not installed")
def test_kustomize_builds_the_dashboard_objects() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True
    ).stdout
    assert "name: muster-web" in built and "namespace: muster" in built
