"""Generate the Python stubs of protos/featurelens/v1 into gen/python (or another folder).

Usage: python scripts/generate_protos.py [--out DIR]

The generated package is committed; tests/test_generated_stubs.py regenerates into a
temporary folder and fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "gen" / "python" / "src"
PACKAGE = Path("featurelens") / "v1"

INIT = '"""Generated gRPC stubs of the featurelens.v1 API (do not edit; run `make protos`)."""\n'


def generate(out_root: Path) -> list[Path]:
    """Generate every proto into out_root/featurelens/v1 and return the written files."""
    # protoc finds the mypy-protobuf plugins on PATH; they live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    protos = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out_root / PACKAGE
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / PACKAGE, target)
    (target / "__init__.py").write_text(INIT)
    (target / "py.typed").write_text("")
    return sorted(target.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args()
    files = generate(ns.out)
    sys.stdout.write(f"generated {len(files)} files into {ns.out / PACKAGE}\n")


if __name__ == "__main__":
    main()
