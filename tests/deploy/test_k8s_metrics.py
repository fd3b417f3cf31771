"""The scrape configuration the Kubernetes manifests carry (docs/metrics.md,
docs/kubernetes.md#metrics): annotations on every dispatcher pod, and the
optional PodMonitor kept out of the default kustomization."""

from __future__ import annotations

from services.core.settings import Settings
from tests.deploy.test_k8s import K8S, _env, _kustomization, _load, _of_kind, _port, _resources


def test_every_dispatcher_pod_serves_metrics_where_its_annotations_say() -> None:
    # The dispatcher's pods; muster-web, the dashboard, is a client of theirs with no metrics.
    deployments = {n: d for n, d in _of_kind("Deployment").items() if n != "muster-web"}
    assert set(deployments) == {"muster-jobs", "muster-nodes", "muster-admin"}
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        [container] = template["spec"]["containers"]
        annotations = template["metadata"]["annotations"]
        listen = Settings.from_env(_env(container)).metrics_listen
        assert listen == f"0.0.0.0:{_port(container, 'metrics')}", name
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(_port(container, "metrics")), name
        assert annotations["prometheus.io/path"] == "/metrics", name


def test_the_pod_monitor_is_optional_and_selects_every_dispatcher_pod() -> None:
    folder = K8S / "monitoring"
    assert "monitoring" not in " ".join(_kustomization(K8S)["resources"])
    [monitor] = [d for d in _resources(folder) if d["kind"] == "PodMonitor"]
    assert monitor == _load(folder / "podmonitor.yaml")[0]
    [selector] = monitor["spec"]["selector"]["matchExpressions"]
    assert selector["key"] == "app.kubernetes.io/name"
    pods = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for n, d in _of_kind("Deployment").items()
        if n != "muster-web"  # the dashboard serves no metrics
    }
    assert set(selector["values"]) == pods
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
