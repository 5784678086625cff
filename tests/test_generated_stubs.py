"""The committed stubs are what the protos generate, and the protos pass buf's lint."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "gen" / "python" / "src" / "featurelens" / "v1"
BUF = Path(sys.executable).parent / "buf"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_protos", ROOT / "scripts" / "generate_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_stubs_gives_the_committed_files_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # generate() puts the venv's bin on PATH for protoc's plugins; undo that after the test.
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    generated = {p.name: p.read_bytes() for p in generator().generate(tmp_path) if p.is_file()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}

    assert sorted(generated) == sorted(committed), "files differ; run `make protos`"
    stale = [name for name in generated if generated[name] != committed[name]]
    assert stale == [], f"stale generated files {stale}; run `make protos` and commit the result"


def test_the_protos_pass_buf_lint() -> None:
    buf = BUF if BUF.exists() else shutil.which("buf")
    if buf is None:
        pytest.skip("the buf binary is not installed (pip install buf-bin, see requirements/dev.txt)")
    result = subprocess.run(
        [str(buf), "lint", "protos"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
