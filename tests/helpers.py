"""Small builders for tests: a manifest over the example config and CSV text of our own."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from loader.cli import cli
from loader.data import read_datasets
from loader.model import Dataset, EntityKind
from loader.validation import validate
from tests.conftest import ROOT

EXAMPLE_CONFIG = ROOT / "manifests" / "example" / "config.json"

RESIDENTS_ENTRY = """\
  - file: {file}
    category: residents
    spatial_resolution: District
    temporal_resolution: Month
    columns: {{date: month, spatial_unit: pcod}}
"""
MOVEMENTS_ENTRY = """\
  - file: {file}
    category: movements
    spatial_resolution: District
    temporal_resolution: Day
    columns: {{date: date, origin: pcod_from, destination: pcod_to}}
"""


def write_manifest(
    directory: Path,
    files: dict[str, str],
    entries: str | None = None,
    access: str = "",
    extra: str = "",
) -> Path:
    """Write CSV files and a manifest over (a copy of) the example config beside them;
    return the manifest path."""
    (directory / "config.json").write_bytes(EXAMPLE_CONFIG.read_bytes())
    blocks = []
    for name, text in files.items():
        (directory / name).write_bytes(text.encode())
        template = MOVEMENTS_ENTRY if "movements" in name else RESIDENTS_ENTRY
        blocks.append(template.format(file=name))
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        "version: 1\n"
        "targets:\n  local: {url: 'local:state/test.db'}\n"
        "setup: config.json\n"
        "ids:\n"
        "  spatial_resolutions: {Region: 1, District: 2}\n"
        "  temporal_resolutions: {Month: 2, Day: 4}\n"
        "revision: r1\n"
        f"{extra}"
        "datasets:\n" + (entries if entries is not None else "".join(blocks)) + access
    )
    return manifest


def edit_column(csv: Path, column: str, change: Callable[[float], float]) -> None:
    """Rewrite every non-empty cell of one CSV column through `change`."""
    lines = csv.read_text().splitlines(keepends=True)
    index = lines[0].strip().split(",").index(column)
    for number in range(1, len(lines)):
        cells = lines[number].rstrip("\n").split(",")
        if cells[index]:
            cells[index] = repr(change(float(cells[index])))
        lines[number] = ",".join(cells) + "\n"
    csv.write_text("".join(lines))


def example() -> tuple[dict[str, list[dict[str, object]]], list[Dataset]]:
    """The example manifest's config (with ids) and all its canonical datasets."""
    report = validate(ROOT / "manifests" / "example.yaml", data=False)
    assert report.manifest is not None
    setup = report.manifest.setup()
    config = {k.value: [dict(e.body) for e in setup.entities if e.kind is k] for k in EntityKind}
    datasets = []
    for spec in report.manifest.datasets:
        for file in spec.files:
            iterator, _ = read_datasets(spec, file, setup)
            datasets.extend(iterator)
    return config, datasets


def cli_run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`flowkit-loader ARGS` in this process: its exit code and output. A traceback (any
    exception but the exit) fails the test, with the output shown."""
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def zipped(*members: tuple[str, bytes]) -> bytes:
    """A zip archive of `members` (name, content), built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def without_package(package: str, code: str) -> str:
    """What `code` prints in a fresh interpreter where `package` cannot be imported (as
    where an optional extra is not installed)."""
    program = f"import sys\nsys.modules[{package!r}] = None\n{code}"
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    return done.stdout


# A small residents CSV: two months, one empty density cell, one empty arrived cell, and
# a density that rounds at its ninth decimal.
RESIDENTS_SAMPLE = (
    "month,pcod,residents,residents_perKm2,arrived\n"
    "2021-02-01,EX01-02,200,2.5,20\n"
    "2021-01-01,EX02-01,300,,30\n"
    "2021-01-01,EX01-01,100,1.25,\n"
    "2021-02-01,EX01-01,110,0.1234567895,11\n"
)
