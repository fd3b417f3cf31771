"""`muster` is installed wherever the project is: the script, the wheel, the image."""

from __future__ import annotations

import re
import tomllib

from tests.support import REPO


def test_the_script_and_its_package_are_in_the_wheel_and_the_image() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["muster"] == "muster_cli.main:main"
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert "muster_cli" in packages
    # The image builds the wheel from what the Dockerfile copies: every package
    # of the wheel but the generated one must be there.
    copied = set(re.findall(r"^COPY (\S+)/ \1/$", (REPO / "Dockerfile").read_text(), re.M))
    missing = sorted(p for p in packages if not p.startswith("gen/") and p not in copied)
    assert not missing, f"the Dockerfile does not copy {missing}"
