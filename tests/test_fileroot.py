"""Where a manifest may read files from: the root, the system folders, bounded globs."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loader import fileroot
from loader.fileroot import FileRoot, OutsideRoot


def test_paths_resolve_inside_the_root_only(tmp_path: Path) -> None:
    (tmp_path / "deploy" / "data").mkdir(parents=True)
    (tmp_path / "shared.csv").write_text("x\n")
    (tmp_path / "deploy" / "data" / "a.csv").write_text("x\n")
    own = FileRoot.of(tmp_path / "deploy", None)
    assert own.resolve("data/a.csv") == (tmp_path / "deploy" / "data" / "a.csv").resolve()
    with pytest.raises(OutsideRoot, match="outside the manifest's folder: set data_root"):
        own.resolve("../shared.csv")
    wider = FileRoot.of(tmp_path / "deploy", "..")
    assert wider.resolve("../shared.csv") == (tmp_path / "shared.csv").resolve()
    with pytest.raises(OutsideRoot, match=r"outside data_root '\.\.'"):
        wider.resolve("../../x.csv")


def test_a_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "secret.csv").write_text("x\n")
    (tmp_path / "deploy" / "link.csv").symlink_to(tmp_path / "secret.csv")
    root = FileRoot.of(tmp_path / "deploy", None)
    with pytest.raises(OutsideRoot):
        root.resolve("link.csv")
    with pytest.raises(OutsideRoot):
        root.glob("*.csv")


@pytest.mark.parametrize("path", ["/proc/self/environ", "/sys/kernel", "/dev/null", "/proc"])
def test_system_folders_are_never_read_whatever_the_root(path: str) -> None:
    with pytest.raises(OutsideRoot, match="which is never read"):
        FileRoot.of(Path("/"), "/").resolve(path)


def test_a_glob_from_the_top_is_refused_before_it_walks(tmp_path: Path) -> None:
    with pytest.raises(OutsideRoot, match="outside"):
        FileRoot.of(tmp_path, None).glob("/**/x_*.csv")


def test_a_glob_stops_after_a_bounded_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(30):
        (tmp_path / f"d{index}").mkdir()
        (tmp_path / f"d{index}" / "f.txt").write_text("")
    monkeypatch.setattr(fileroot, "MAX_GLOB_ENTRIES", 40)
    with pytest.raises(OutsideRoot, match="looks at more than 40 files and folders: narrow it"):
        FileRoot.of(tmp_path, None).glob("**/*.csv")
    assert FileRoot.of(tmp_path, None).glob("d1/*.txt") == [(tmp_path / "d1" / "f.txt").resolve()]


names = st.sampled_from(["a", "b", ".h", "x_1.csv", "x_2.csv", "y.csv", ".x_3.csv"])
trees = st.lists(st.lists(names, min_size=1, max_size=4), max_size=12)
patterns = st.sampled_from(
    ["*.csv", "x_*.csv", "**/*.csv", "**/x_*.csv", "a/*.csv", "a/**/y.csv", "*/x_?.csv",
     ".h/*.csv", "**/.x_*.csv", "[ab]/*", "a/b/**", "**"]
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=trees, pattern=patterns)
def test_globs_match_what_glob_glob_matches(
    tmp_path: Path, tree: list[list[str]], pattern: str
) -> None:
    """The bounded walk finds the same regular files as the standard library's glob."""
    base = tmp_path / "t"
    for parts in tree:
        folder = base.joinpath(*parts[:-1])
        if any(p.is_file() for p in [folder, *folder.parents] if p != tmp_path):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / parts[-1]
        if not target.exists():
            target.write_text("")
    base.mkdir(exist_ok=True)
    expected = sorted(
        Path(p).resolve()
        for p in glob.glob(os.path.join(base, pattern), recursive=True)
        if Path(p).is_file()
    )
    assert FileRoot.of(base, None).glob(pattern) == expected
