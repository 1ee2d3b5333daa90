"""Shared fixtures: the project's paths, the upstream reference data, an isolated cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
# Upstream's reference files live beside the project (CI always has them); never copied in.
REFERENCE = ROOT.parent / "shared" / "reference"
UPSTREAM_DATA = REFERENCE / "upstream-data"


def need_reference() -> None:
    if not UPSTREAM_DATA.is_dir():
        pytest.skip(f"upstream reference data not found at {UPSTREAM_DATA}")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test session gets its own preparation cache, never the user's."""
    patcher = pytest.MonkeyPatch()
    patcher.setenv("FLOWKIT_LOADER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    patcher.delenv("FLOWKIT_PLAN_KEY", raising=False)  # a developer's own would sign plans
    yield
    patcher.undo()
