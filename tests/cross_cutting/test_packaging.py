"""A plain `pip install` carries the schemas: the wheel has them as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_carries_the_schemas_and_serves_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("flowkit_loader-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "loader/schemas/manifest.schema.json" in names
    assert "loader/schemas/config.schema.json" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    code = (
        "import loader, loader.validation as v, json; "
        f"assert loader.__file__.startswith({str(target)!r}), loader.__file__; "
        "print(json.loads(v.schema_text())['title'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "flowkit-loader manifest"
