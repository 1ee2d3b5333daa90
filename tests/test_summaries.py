"""loader/summaries.py: what a data file gives a plan, from the cache when the file is
unchanged. An entry is keyed by the file's identity (a same-length edit with its mtime put
back is seen), its format, the manifest's reading of it (the missing spellings) and the
reading code; an entry made while the file was new is not trusted; a cache hit reads no
data file and imports neither pandas nor pyarrow; entries of earlier versions and damaged
entries are read again."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loader import data, summaries
from loader.validation import validate
from tests.conftest import ROOT
from tests.helpers import RESIDENTS_SAMPLE, write_manifest

RESIDENTS = RESIDENTS_SAMPLE


def refuse_rereading(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, reading a CSV again is an error: summaries must come from the cache."""

    def refuse(self: data.FileDatasets) -> None:
        raise AssertionError("the file was read again")

    monkeypatch.setattr(data.FileDatasets, "datasets", refuse)


def test_the_cache_spares_rereading_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The files were written a moment ago: only with no racy window is their entry trusted.
    monkeypatch.setattr(summaries, "RACY_NANOS", 0)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    first = validate(manifest)
    assert first.ok and len(first.summaries) == 6

    refuse_rereading(monkeypatch)
    assert validate(manifest).summaries == first.summaries
    csv_path = tmp_path / "residents.csv"
    stat = csv_path.stat()
    os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        validate(manifest)


def test_a_same_length_edit_with_its_mtime_put_back_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`touch -r` after an edit keeps size and mtime; the change time betrays it."""
    monkeypatch.setattr(summaries, "RACY_NANOS", 0)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    before = {s.key: s for s in validate(manifest).summaries}
    csv_path = tmp_path / "residents.csv"
    stat = csv_path.stat()
    csv_path.write_text(RESIDENTS.replace("200,2.5", "201,2.5"))
    os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = csv_path.stat()
    assert (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    changed = [s for s in validate(manifest).summaries if s.digest != before[s.key].digest]
    assert [(s.key.indicator_id, s.key.dt[:10]) for s in changed] == [
        ("residents.residents", "2021-02-01")
    ]


def test_an_entry_made_while_the_file_was_new_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git's racily clean rule: on a filesystem with coarse timestamps, a file changed in
    the same tick as it was read keeps its stamps; such an entry is read again."""
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    validate(manifest)  # the file's change time is within RACY_NANOS of this read
    refuse_rereading(monkeypatch)
    with pytest.raises(AssertionError, match="read again"):
        validate(manifest)


def test_the_missing_spellings_are_part_of_the_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(summaries, "RACY_NANOS", 0)
    text = "month,pcod,residents\n2021-01-01,EX01-01,NA\n2021-01-01,EX01-02,3\n"
    manifest = write_manifest(tmp_path, {"residents.csv": text})
    assert validate(manifest).ok
    manifest.write_text(manifest.read_text() + '    missing: [""]\n')
    [problem] = validate(manifest).errors
    assert str(problem) == "residents.csv:2:20: not a number: 'NA' in column 'residents'"


def test_the_format_is_part_of_the_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file read first as a plain CSV, then as gzip (format named in the manifest):
    the plain reading's entry must not answer for the other."""
    monkeypatch.setattr(summaries, "RACY_NANOS", 0)
    manifest = write_manifest(tmp_path, {"residents.data": RESIDENTS})
    assert validate(manifest).ok
    text = manifest.read_text().replace("    columns:", "    format: csv.gz\n    columns:")
    manifest.write_text(text)
    [problem] = validate(manifest).errors
    assert str(problem).startswith(f"{tmp_path}/residents.data:1:1: cannot read file: ")


def test_a_cache_hit_imports_neither_pandas_nor_pyarrow(tmp_path: Path) -> None:
    """A second validate of unchanged CSV and Parquet files, in a fresh interpreter, finds
    them in the cache: the data libraries are never loaded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = write_manifest(tmp_path, {"residents.csv.gz": "", "movements.parquet": ""})
    (tmp_path / "residents.csv.gz").write_bytes(gzip.compress(RESIDENTS.encode()))
    movements = pa.table(
        {"date": ["2021-03-01"], "pcod_from": ["EX01-01"], "pcod_to": ["EX01-02"],
         "travellers": [4], "travellers_pctchangewithref": [0.5]}
    )  # fmt: skip
    pq.write_table(movements, tmp_path / "movements.parquet")
    code = (
        "import json, sys\n"
        "import loader.summaries\n"
        "loader.summaries.RACY_NANOS = 0  # the files were written a moment ago\n"
        "from loader.validation import validate\n"
        f"report = validate({str(manifest)!r})\n"
        "loaded = sorted({'pandas', 'pyarrow'} & {m.split('.')[0] for m in sys.modules})\n"
        "print(json.dumps([report.ok, len(report.summaries), loaded]))\n"
    )
    env = {**os.environ, "FLOWKIT_LOADER_CACHE_DIR": str(tmp_path / "cache")}
    options = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 120}
    runs = [subprocess.run([sys.executable, "-c", code], check=True, **options) for _ in "12"]
    first, second = (json.loads(run.stdout) for run in runs)
    assert first == [True, 8, ["pandas", "pyarrow"]]  # read: both were needed
    assert second == [True, 8, []]


def test_an_entry_of_an_earlier_version_or_damaged_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(summaries, "RACY_NANOS", 0)
    monkeypatch.setenv("FLOWKIT_LOADER_CACHE_DIR", str(tmp_path / "cache"))
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    first = validate(manifest).summaries
    [entry] = (tmp_path / "cache").glob("*.json")  # a data file's entry (not checked/)
    payload = json.loads(entry.read_text())
    for problem in payload["problems"]:
        problem.pop()  # as version 3 wrote them: no row
    payload["problems"].append([2, 1, "from an earlier version", "error"])
    entry.write_text(json.dumps(payload))
    assert validate(manifest).summaries == first and validate(manifest).ok
    entry.write_text("{not json")
    assert validate(manifest).summaries == first
