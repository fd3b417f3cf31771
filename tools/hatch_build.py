"""Hatch build hook of the three distributions: see tools/distributions.py.

A standard wheel gets exactly the files its hook table names. An editable
install gets none: `dev-mode-dirs` puts the repository itself on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distributions
import gen_protos


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        include = build_data["force_include"]
        include.update(distributions.wheel_files(self.config))
        if self.config.get("generate"):
            out = distributions.ROOT / "gen"
            gen_protos.generate(out)
            # gen/ is git-ignored, and hatchling leaves ignored files out: name them.
            for path in distributions.package_files(out / gen_protos.PACKAGE, set(), out):
                include[str(path)] = path.relative_to(out).as_posix()
