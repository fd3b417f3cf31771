"""Hatch build hook: generate the protobuf modules before a wheel is built."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        sys.path.insert(0, str(Path(self.root) / "tools"))
        import gen_protos

        out = Path(self.root) / "gen"
        gen_protos.generate(out)
        # gen/ is git-ignored, and hatchling leaves ignored files out: name it.
        build_data["force_include"][str(out / "muster_proto")] = "muster_proto"
