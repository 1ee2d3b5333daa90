"""loader/manifestpart.py: problems located in the document, paths the schema rejected."""

from __future__ import annotations

from pathlib import Path

from loader.manifestpart import ManifestPart
from loader.model import Problem
from loader.yamlsrc import load_yaml

TEXT = "datasets:\n  - file: a.csv\n    category: residents\n"


def test_an_error_lands_on_the_value_or_on_its_key(tmp_path: Path) -> None:
    problems: list[Problem] = []
    part = ManifestPart(load_yaml(TEXT, "m.yaml", {}), tmp_path, frozenset(), problems)
    part.error(("datasets", 0, "category"), "on the value")
    part.error(("datasets", 0, "category"), "on the key", key=True)
    found = [(p.position.line, p.position.column, p.message) for p in problems]
    assert found == [(3, 15, "on the value"), (3, 5, "on the key")]


def test_a_part_is_rejected_when_the_schema_rejected_it_or_anything_in_it(tmp_path: Path) -> None:
    rejected = frozenset({("datasets", 0, "category")})
    part = ManifestPart(load_yaml(TEXT, "m.yaml", {}), tmp_path, rejected, [])
    # The builder skips the whole entry: a half-checked one would give a second line.
    assert part.is_rejected(("datasets", 0)) and part.is_rejected(("datasets", 0, "category"))
    assert not part.is_rejected(("datasets", 0, "file")) and not part.is_rejected(("datasets", 1))


def test_relative_paths_start_at_the_manifest_folder(tmp_path: Path) -> None:
    part = ManifestPart(load_yaml(TEXT, "m.yaml", {}), tmp_path, frozenset(), [])
    assert part.resolve_path("data/../a.csv") == (tmp_path / "a.csv").resolve()
