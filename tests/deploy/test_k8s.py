"""The Kubernetes manifests in deploy/k8s, read as an operator's cluster would
apply them and checked against the code and docs they must agree with: the
CLI, the settings, docs/configuration.md, the Secret templates, the Dockerfile.
No cluster is needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.app import SERVICE_NAMES
from services.cli import _parser
from services.core.settings import Settings, SettingsError
from services.core.tls import ClientTLS, ServerTLS

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SECRETS = K8S / "secrets"
# Variables a manifest may set that are not the dispatcher's own.
STANDARD_VARIABLES = {"TZ", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}

Doc = dict[str, Any]


def _load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _kustomization(folder: Path) -> Doc:
    [doc] = _load(folder / "kustomization.yaml")
    assert doc["kind"] == "Kustomization"
    return doc


def _resources(folder: Path) -> list[Doc]:
    docs: list[Doc] = []
    for name in _kustomization(folder)["resources"]:
        assert (folder / name).is_file(), f"{folder / name} is listed but missing"
        docs.extend(_load(folder / name))
    return docs


MANIFESTS = _resources(K8S)
SECRET_TEMPLATES = {d["metadata"]["name"]: d for d in _resources(SECRETS) if d["kind"] == "Secret"}


def _of_kind(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in MANIFESTS if d["kind"] == kind}


def _pod_specs() -> dict[str, Doc]:
    workloads = {**_of_kind("Deployment"), **_of_kind("Job")}
    return {name: w["spec"]["template"]["spec"] for name, w in workloads.items()}


def _containers() -> list[tuple[str, Doc, Doc]]:
    return [(name, spec, c) for name, spec in _pod_specs().items() for c in spec["containers"]]


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


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


def _deployment(service: str) -> tuple[Doc, Doc]:
    deployment = _of_kind("Deployment")[f"muster-{service}"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_the_kustomization_lists_every_manifest_and_generated_file() -> None:
    listed = set(_kustomization(K8S)["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "a manifest file is not in kustomization.yaml (or the reverse)"
    for generator in _kustomization(K8S).get("configMapGenerator", []):
        for name in generator["files"]:
            assert (K8S / name.split("=")[-1]).is_file()
    kinds = {d["kind"] for d in MANIFESTS}
    assert {"Namespace", "Deployment", "Service", "Job", "PodDisruptionBudget"} <= kinds


def test_one_namespace_everywhere() -> None:
    [namespace] = _of_kind("Namespace")
    assert _kustomization(K8S)["namespace"] == namespace
    assert _kustomization(SECRETS)["namespace"] == namespace
    for _, _, container in _containers():
        for name, value in _env(container).items():
            if ".svc" in value:
                assert f".{namespace}.svc" in value, f"{name}={value} names another namespace"


def test_every_variable_set_is_documented_or_standard() -> None:
    documented = _documented_variables()
    assert "MUSTER_DATABASE_URL" in documented  # the doc parser itself works
    for workload, _, container in _containers():
        for name in _env(container):
            assert name in documented or name in STANDARD_VARIABLES, (
                f"{workload} sets {name}, which docs/configuration.md does not document"
            )


def test_every_container_environment_is_accepted_by_the_settings_and_tls_readers() -> None:
    for workload, _, container in _containers():
        env = _env(container)
        try:
            Settings.from_env(env)
            ServerTLS.from_env(env)
            ClientTLS.from_env(env)
        except (SettingsError, ValueError) as exc:
            pytest.fail(f"{workload}: {exc}")


def test_each_service_has_one_deployment_running_it_on_its_port() -> None:
    deployments = _of_kind("Deployment")
    # Beside them: muster-web, the dashboard (tests/deploy/test_k8s_dashboard.py).
    assert set(deployments) == {f"muster-{s}" for s in SERVICE_NAMES} | {"muster-web"}
    for service in SERVICE_NAMES:
        deployment, container = _deployment(service)
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


def test_services_reach_the_grpc_port_of_their_pods() -> None:
    services = _of_kind("Service")
    for service in SERVICE_NAMES:
        deployment, container = _deployment(service)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        fronting = [
            s for s in services.values() if s["spec"]["selector"].items() <= pod_labels.items()
        ]
        assert any(s["metadata"]["name"] == f"muster-{service}" for s in fronting)
        for front in fronting:
            [port] = front["spec"]["ports"]
            assert port["targetPort"] in ("grpc", _port(container, "grpc"))


def test_probes_are_grpc_health_checks_on_the_plaintext_health_port() -> None:
    for service in SERVICE_NAMES:
        _, container = _deployment(service)
        env = _env(container)
        health_port = _port(container, "health")
        assert int(env["MUSTER_HEALTH_LISTEN"].rsplit(":", 1)[1]) == health_port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
            assert container[probe]["grpc"]["port"] == health_port, f"{service} {probe}"
            # Health service "" is the server as a whole (services/core/server.py).
            assert container[probe]["grpc"].get("service", "") == ""
        # kubelet probes speak plaintext: on a TLS port they could never pass.
        if ServerTLS.from_env(env) is not None:
            assert health_port != _port(container, "grpc")


def test_the_nodes_service_calls_every_jobs_replica_through_a_headless_service() -> None:
    _, nodes = _deployment("nodes")
    target = _env(nodes)["MUSTER_JOBS_ADDRESS"]
    match = re.fullmatch(r"dns:///([a-z0-9-]+)\.[a-z0-9.-]+:(\d+)", target)
    assert match, target
    headless = _of_kind("Service")[match[1]]
    assert headless["spec"]["clusterIP"] == "None"
    jobs, jobs_container = _deployment("jobs")
    assert headless["spec"]["selector"].items() <= (
        jobs["spec"]["template"]["metadata"]["labels"].items()
    )
    [port] = headless["spec"]["ports"]
    assert int(match[2]) == port["port"]
    assert port["targetPort"] in ("grpc", _port(jobs_container, "grpc"))


def test_addresses_given_to_the_facade_name_existing_services() -> None:
    services = _of_kind("Service")
    for workload, _, container in _containers():
        for name, value in _env(container).items():
            if name.endswith("_ADDRESS") and not value.startswith("dns:///"):
                host, port = value.rsplit(":", 1)
                service = services[host.split(".")[0]]
                assert int(port) in [p["port"] for p in service["spec"]["ports"]], workload


def _mounted_files(spec: Doc, container: Doc) -> dict[str, tuple[str, str]]:
    """{path of each file a Secret or ConfigMap volume provides: (kind, name)}."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            secret = volume["secret"]["secretName"]
            for key in SECRET_TEMPLATES[secret]["stringData"]:
                files[f"{mount['mountPath']}/{key}"] = ("Secret", secret)
        elif "configMap" in volume:
            files[mount["mountPath"]] = ("ConfigMap", volume["configMap"]["name"])
    return files


def test_every_secret_and_config_map_referenced_exists_with_its_keys() -> None:
    config_maps = {g["name"] for g in _kustomization(K8S).get("configMapGenerator", [])} | set(
        _of_kind("ConfigMap")
    )
    for workload, spec, container in _containers():
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in SECRET_TEMPLATES, workload
                assert volume["secret"]["defaultMode"] == 0o440  # group-readable (fsGroup)
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, workload
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in SECRET_TEMPLATES[ref["name"]]["stringData"], workload
        files = _mounted_files(spec, container)
        for name, value in _env(container).items():
            if name.endswith("_FILE"):
                assert files.get(value, ("", ""))[0] == "Secret", f"{workload}: {name}={value}"


def test_generated_config_maps_keep_their_names_for_live_hook_reloads() -> None:
    for generator in _kustomization(K8S).get("configMapGenerator", []):
        assert generator.get("options", {}).get("disableNameSuffixHash") is True


def test_hooks_are_mounted_where_the_jobs_service_reads_them() -> None:
    _, jobs = _deployment("jobs")
    spec = _of_kind("Deployment")["muster-jobs"]["spec"]["template"]["spec"]
    hooks_dir = _env(jobs)["MUSTER_HOOKS_DIR"]
    assert _mounted_files(spec, jobs)[hooks_dir] == ("ConfigMap", "muster-hooks")
    assert Settings.from_env(_env(jobs)).hooks_folder == Path(hooks_dir)


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


def test_the_migration_job_upgrades_the_schema_with_the_same_image() -> None:
    [job] = _of_kind("Job").values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["dispatcher"]
    parsed = _parser().parse_args(container["args"])
    assert parsed.command == "migrate" and parsed.action == "upgrade"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_every_container_runs_the_one_image_built_by_the_dockerfile() -> None:
    [image] = _kustomization(K8S)["images"]
    for workload, _, container in _containers():
        assert container["image"] == image["name"], workload
    # The image itself (stages, base, build) is tests/deploy/test_image.py's.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["dispatcher"\]', dockerfile, re.M)
    user = re.findall(r"^USER (\d+)", dockerfile, re.M)
    assert user and user[-1] != "0"
    for workload, spec, _ in _containers():
        assert str(spec["securityContext"]["runAsUser"]) == user[-1], workload


def test_every_container_is_locked_down_and_sized() -> None:
    for workload, spec, container in _containers():
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


def test_the_nodes_service_keeps_a_replica_through_voluntary_disruptions() -> None:
    [budget] = _of_kind("PodDisruptionBudget").values()
    nodes, _ = _deployment("nodes")
    labels = nodes["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert nodes["spec"]["replicas"] > budget["spec"]["minAvailable"] >= 1


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
