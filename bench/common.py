"""What the benchmarks share: where upstream's data is, and loading a manifest's
canonical datasets outside any timing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_DATA = ROOT.parent / "shared" / "reference" / "upstream-data"
UPSTREAM_MANIFEST = ROOT / "tests" / "data" / "upstream" / "manifest.yaml"

os.environ["FLOWKIT_LOADER_NO_CACHE"] = "1"  # before importing loader: never use a cache
sys.path.insert(0, str(ROOT))

from loader.data import read_datasets  # noqa: E402
from loader.model import Dataset, Manifest  # noqa: E402
from loader.validate import validate  # noqa: E402


def fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_manifest(path: Path) -> Manifest:
    report = validate(path, data=False)
    if not report.ok or report.manifest is None:
        problems = "\n".join(str(p) for p in report.errors)
        fail(f"{path} is invalid:\n{problems}")
    assert report.manifest is not None
    return report.manifest


def prepare(manifest: Manifest) -> list[Dataset]:
    """Every canonical dataset of every file of the manifest, materialised."""
    setup = manifest.setup()
    datasets: list[Dataset] = []
    for spec in manifest.datasets:
        for path in spec.files:
            iterator, file_report = read_datasets(spec, path, setup)
            datasets.extend(iterator)
            if file_report.has_errors:
                fail(f"{path}: {file_report.problems[0]}")
    return datasets
