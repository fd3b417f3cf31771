"""`muster` is installed wherever the client is: the script, the client's wheel, the image."""

from __future__ import annotations

import re

from tests.support import REPO
from tools import distributions


def test_the_script_and_its_package_are_in_the_client_s_wheel_and_the_image() -> None:
    client = distributions.PROJECTS["farm-dispatcher-client"]
    project = distributions.pyproject(client)
    assert project["project"]["scripts"]["muster"] == "muster_cli.main:main"
    assert "muster_cli" in distributions.hook_table(client)["packages"]
    # Its dependencies come with the client's `cli` extra, which the server requires.
    assert {"typer", "rich", "pyyaml"} <= {
        re.split(r"[<>=]", r)[0] for r in project["project"]["optional-dependencies"]["cli"]
    }
    server = distributions.pyproject(distributions.ROOT)["project"]["dependencies"]
    assert any(d.startswith("farm-dispatcher-client[cli]==") for d in server)
    # The image builds the wheels from what the Dockerfile copies.
    copied = set(re.findall(r"^COPY (\S+)/ \1/$", (REPO / "Dockerfile").read_text(), re.M))
    assert "muster_cli" in copied
