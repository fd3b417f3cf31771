"""Generate the Python protobuf/gRPC modules and their typed stubs from protos/.

The output goes to gen/ (build output, never committed). Run by `make protos`
and by the wheel build hook, so both paths produce the same modules.

The protos' files live under `farm/` (their paths and packages are the wire
contract and stay), but the Python modules are installed as `muster_proto`:
a top-level `farm` would collide with other packages in a studio's Python.
protoc names a module after its file's path, so the generated tree is moved
and its imports rewritten; descriptors keep their `farm/...` file names.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = "muster_proto"

# Module references only: `from farm.x.v1 import`, `import farm.x.v1.y_pb2`, and
# `farm.x.v1.y_pb2` in the stubs' annotations and the modules' names. The
# descriptors' bytes name messages (`.farm.jobs.v1.Job`) and files
# (`farm/jobs/v1/jobs.proto`), never a `_pb2` module, and are left alone.
_MODULE_REFERENCES = [
    (re.compile(r"^(\s*)from farm(\.| import\b)", re.M), rf"\1from {PACKAGE}\2"),
    (re.compile(r"^(\s*)import farm\.", re.M), rf"\1import {PACKAGE}."),
    (re.compile(r"\bfarm\.(\w+\.v\d+\.\w+_pb2(?:_grpc)?)\b"), rf"{PACKAGE}.\1"),
]


def relocate(text: str) -> str:
    """A generated module's text with its `farm` module references under PACKAGE."""
    for pattern, replacement in _MODULE_REFERENCES:
        text = pattern.sub(replacement, text)
    return text


def _plugin(name: str) -> str:
    """Find a protoc plugin next to the running interpreter first, then on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the dev extras (make setup)")
    return found


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    package = out_dir / PACKAGE
    (out_dir / "farm").rename(package)
    for module in package.rglob("*.py*"):
        module.write_text(relocate(module.read_text()))
    # Regular packages (not namespace packages) so mypy and importlib agree.
    for folder in [out_dir, *(p for p in out_dir.rglob("*") if p.is_dir())]:
        if folder != out_dir:
            (folder / "__init__.py").touch()
    (package / "py.typed").touch()
    return protos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "gen")
    ns = parser.parse_args()
    protos = generate(ns.out)
    print(f"generated {len(protos)} proto files into {os.path.relpath(ns.out, ROOT)}/")


if __name__ == "__main__":
    main()
