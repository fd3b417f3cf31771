"""Every command of docs/kubernetes.md, run as far as a machine without a cluster
can: `kubectl kustomize` as written; `kubectl apply -k` as the rendering it
applies (and the objects its selector picks); `kubectl create secret` with
--dry-run=client; the openssl steps for real; commands that act on objects
(wait, rollout status, logs, get) against the objects the overlay renders. The
example overlay and its files are written out from the page and rendered. A
command this test does not know fails it. The image section is
tests/deploy/test_image.py's."""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_k8s import REPO, Doc, kubectl

DOC = REPO / "docs" / "kubernetes.md"
# Installed with the dev dependencies, beside this interpreter.
VALIDATE = str(Path(sys.executable).parent / "kubernetes-validate")
SKIPPED_SECTIONS = {"The image"}


def _sections() -> dict[str, str]:
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.M)
    return {"": parts[0], **dict(zip(parts[1::2], parts[2::2], strict=True))}


def _blocks(language: str) -> list[str]:
    found: list[str] = []
    for title, text in _sections().items():
        if title not in SKIPPED_SECTIONS:
            found += re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)
    return found


def commands() -> list[str]:
    lines: list[str] = []
    for block in _blocks("sh"):
        lines += [c.strip() for c in block.replace("\\\n", " ").splitlines()]
    return [c for c in lines if c and not c.startswith("#")]


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{shlex.join(args)}:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder as an operator's: this repository checked out as
    muster-dispatcher (and its deploy/ at hand), the page's overlay files, the
    farm's CA, the files the Secrets are made from."""
    (tmp_path / "muster-dispatcher").symlink_to(REPO)
    (tmp_path / "deploy").symlink_to(REPO / "deploy")
    for block in _blocks("yaml") + _blocks("python"):
        header = block.splitlines()[0]
        match = re.fullmatch(r"# (studio-farm/\S+)", header)
        if match:
            target = tmp_path / match[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block)
    # The CA of docs/security.md.
    _run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "365", "-subj", "/CN=farm CA", "-keyout", "ca.key", "-out", "ca.pem",
        ],
        tmp_path,
    )  # fmt: skip
    (tmp_path / "admin-password").write_text("an-admin-password\n")
    (tmp_path / "enrollment-secret").write_text("an-enrollment-secret\n")
    return tmp_path


class Farm:
    """What the commands so far made: rendered kustomizations, Secrets."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.rendered: dict[str, list[Doc]] = {}
        self.secrets: dict[str, dict[str, str]] = {}

    def render(self, folder: str) -> list[Doc]:
        if folder not in self.rendered:
            out = _run([kubectl(), "kustomize", folder], self.workspace)
            self.rendered[folder] = [d for d in yaml.safe_load_all(out) if d]
        return self.rendered[folder]

    def objects(self) -> dict[str, Doc]:
        """{"kind/name" (kubectl's spelling): object} of everything rendered."""
        return {
            f"{d['kind'].lower()}/{d['metadata']['name']}": d
            for docs in self.rendered.values()
            for d in docs
        }

    def run(self, command: str) -> None:
        args = shlex.split(command)
        if args[:2] == ["kubectl", "kustomize"]:
            assert self.render(args[2])
        elif args[:3] == ["kubectl", "apply", "-k"]:
            self.apply(args[3], args[4:])
        elif args[:3] == ["kubectl", "apply", "-f"]:
            [doc] = [d for d in yaml.safe_load_all((self.workspace / args[3]).read_text()) if d]
            assert doc["kind"] == "Namespace" and doc["metadata"]["name"] == "muster"
        elif args[:5] == ["kubectl", "-n", "muster", "create", "secret"]:
            self.create_secret(args)
        elif args[:3] == ["kubectl", "-n", "muster"] and args[3] in ("wait", "rollout", "logs"):
            name = args[-1] if args[3] != "wait" else args[5]
            if args[3] == "wait":
                assert args[4] == "--for=condition=complete" and name.startswith("job/")
            assert name in self.objects(), f"{command}: no {name} in what was applied"
        elif args[:5] == ["kubectl", "-n", "muster", "get", "secret"]:
            self.get_secret(args)
        elif args[0] == "openssl":
            _run(args, self.workspace)
        else:
            pytest.fail(f"docs/kubernetes.md: no test runs `{command}`")

    def apply(self, folder: str, rest: list[str]) -> None:
        docs = self.render(folder)
        flags = dict(zip(rest[::2], rest[1::2], strict=False))
        assert set(rest) - set(flags.values()) <= {"-l", "--force"}, rest
        if "-l" in flags:
            key, value = flags["-l"].split("=")
            picked = [d for d in docs if d["metadata"].get("labels", {}).get(key) == value]
            assert [d["kind"] for d in picked] == ["Job"], f"-l {flags['-l']} picks {picked}"

    def create_secret(self, args: list[str]) -> None:
        out = _run([kubectl(), *args[1:], "--dry-run=client", "-o", "yaml"], self.workspace)
        secret = yaml.safe_load(out)
        self.secrets[secret["metadata"]["name"]] = secret["data"]

    def get_secret(self, args: list[str]) -> None:
        # kubectl -n muster get secret NAME -o jsonpath={.data.KEY} | base64 -d
        name, key = args[5], re.fullmatch(r"jsonpath=\{\.data\.(\w+)\}", args[7])
        assert key and args[8:] == ["|", "base64", "-d"], args
        assert base64.b64decode(self.secrets[name][key[1]]).decode().strip()


def test_every_command_of_the_page_runs(workspace: Path) -> None:
    farm = Farm(workspace)
    listed = commands()
    assert len(listed) >= 20  # the parser itself works
    for command in listed:
        farm.run(command)
    assert (workspace / "server.pem").is_file()  # the certificate steps ran
    assert set(farm.secrets) == {
        "muster-database",
        "muster-admin-password",
        "muster-enrollment",
        "muster-tls",
    }


def test_the_example_overlay_changes_what_it_says(workspace: Path) -> None:
    docs = Farm(workspace).render("studio-farm")
    by_name: dict[tuple[str, str], Any] = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    nodes = by_name[("Service", "muster-nodes")]
    assert nodes["spec"]["type"] == "LoadBalancer" and nodes["spec"]["loadBalancerSourceRanges"]
    assert by_name[("HorizontalPodAutoscaler", "muster-nodes")]["spec"]["maxReplicas"] == 10
    hooks = by_name[("ConfigMap", "muster-hooks")]
    assert list(hooks["data"]) == ["naming.py"]
    compile(hooks["data"]["naming.py"], "naming.py", "exec")
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"] == "registry.example/muster-dispatcher:0.2.0"
    # And it is valid for the Kubernetes versions make k8s-validate checks.
    rendered = workspace / "studio-farm.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    for version in ("1.30.0", "1.37.0"):
        _run([VALIDATE, "--strict", "--quiet", "-k", version, str(rendered)], workspace)
