"""What earlier runs found clean (loader/checked.py): remembered by content, so that an
unchanged manifest is not checked again, and never in the way of a change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loader import checked
from loader.model import entity_digest
from loader.validation import validate
from tests.conftest import ROOT

EXAMPLE = ROOT / "manifests" / "example.yaml"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FLOWKIT_LOADER_NO_CACHE", raising=False)
    monkeypatch.setenv("FLOWKIT_LOADER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def copy_example(directory: Path) -> Path:
    import shutil

    shutil.copytree(ROOT / "manifests" / "example", directory / "example")
    manifest = directory / "example.yaml"
    manifest.write_text(EXAMPLE.read_text())
    return manifest


def test_what_is_remembered_is_recalled_by_kind_and_key() -> None:
    checked.remember("schema", "abc", True)
    assert checked.recall("schema", "abc") is True
    assert checked.recall("schema", "abd") is None
    assert checked.recall("nesting", "abc") is None


def test_parts_are_length_prefixed_so_no_two_lists_collide() -> None:
    assert checked.digest_of("ab", "c") != checked.digest_of("a", "bc")
    assert checked.digest_of("ab") == checked.digest_of(b"ab")


def test_nothing_is_remembered_with_the_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_LOADER_NO_CACHE", "1")
    checked.remember("schema", "abc", True)
    assert checked.recall("schema", "abc") is None


def test_a_damaged_entry_counts_as_nothing(cache: Path) -> None:
    checked.remember("digests", "k", {"a": "1"})
    [entry] = (cache / "checked").iterdir()
    entry.write_text("{not json")
    assert checked.recall("digests", "k") is None
    entry.write_text(json.dumps({"a": "1", "b": 2, "c": ["x"]}))
    assert checked.recall_texts("digests", "k") == {"a": "1"}
    entry.write_text(json.dumps(["a"]))
    assert checked.recall_texts("digests", "k") == {}


def test_a_cache_that_cannot_be_written_only_costs_time(cache: Path) -> None:
    cache.mkdir()
    (cache / "checked").write_text("a file where the folder goes")
    checked.remember("schema", "abc", True)  # no exception
    assert checked.recall("schema", "abc") is None


def test_a_second_validate_of_an_unchanged_manifest_does_not_import_jsonschema(
    tmp_path: Path, cache: Path
) -> None:
    manifest = copy_example(tmp_path)
    code = (
        "import json, sys\n"
        "from loader.validation import validate\n"
        f"report = validate({str(manifest)!r}, data=False)\n"
        "print(json.dumps([report.ok, 'jsonschema' in sys.modules]))\n"
    )
    env = {**os.environ, "FLOWKIT_LOADER_CACHE_DIR": str(cache)}
    env.pop("FLOWKIT_LOADER_NO_CACHE", None)
    options = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 120}
    runs = [subprocess.run([sys.executable, "-c", code], check=True, **options) for _ in "12"]
    assert [json.loads(run.stdout) for run in runs] == [[True, True], [True, False]]


def test_a_manifest_changed_after_passing_is_checked_again(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    assert validate(manifest, data=False).ok
    manifest.write_text(manifest.read_text().replace("version: 1", "version: 7", 1))
    report = validate(manifest, data=False)
    assert not report.ok
    assert any("version" in problem.message for problem in report.errors)


def test_a_config_changed_after_passing_is_checked_again(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    assert validate(manifest, data=False).ok
    config_path = tmp_path / "example" / "config.json"
    config = json.loads(config_path.read_text())
    config["indicators"][0]["category_id"] = ["not", "text"]
    config_path.write_text(json.dumps(config))
    assert not validate(manifest, data=False).ok
    config_path.write_text("[" * 500 + "]" * 500)  # too deep: the nesting check runs again
    report = validate(manifest, data=False)
    assert any("nested deeper than" in problem.message for problem in report.errors)


def test_a_remembered_digest_is_the_digest_computed(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    first = validate(manifest, data=False).manifest
    second = validate(manifest, data=False).manifest  # digests remembered by now
    assert first is not None and second is not None
    computed = {e.digest_key: entity_digest(e.body) for e in first.setup().entities}
    recalled = {e.digest_key: e.__dict__.get("digest") for e in second.setup().entities}
    assert recalled == computed  # seeded, and equal to what hashing the body gives


def test_an_edited_body_gets_its_own_digest_whatever_was_remembered(tmp_path: Path) -> None:
    manifest = copy_example(tmp_path)
    before = validate(manifest, data=False).manifest
    config_path = tmp_path / "example" / "config.json"
    config = json.loads(config_path.read_text())
    config["categories"][0]["label"] = "Renamed"
    config_path.write_text(json.dumps(config))
    after = validate(manifest, data=False).manifest
    assert before is not None and after is not None
    old = {e.digest_key: e.digest for e in before.setup().entities}
    new = {e.digest_key: e.digest for e in after.setup().entities}
    changed = [key for key in new if key.startswith("categories/") and old.get(key) != new[key]]
    assert changed
