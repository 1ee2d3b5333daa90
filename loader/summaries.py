"""What one data file gives a plan: its datasets' summaries, counts and problems (a
FileReport), from a cache when the file is unchanged, so that a plan of unchanged data
reads no data file and imports neither pandas nor pyarrow.

The cache is keyed by the file's identity (path, device, inode, size, modification and
change times), its format, everything of the manifest and config that shapes its
datasets, and the code that reads it; an entry is trusted only once the file is older
than the coarsest timestamps a filesystem keeps (git's "racily clean" rule).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from loader.fileformats import format_of
from loader.model import (
    DIGEST_VERSION,
    DatasetKey,
    DatasetSpec,
    DatasetStats,
    DatasetSummary,
    Position,
    Problem,
    SetupConfig,
    Severity,
)

CACHE_VERSION = 4  # 4: the file's format in the key, a problem's row (Parquet)
RACY_NANOS = 2 * 10**9  # the coarsest timestamps a filesystem may keep (FAT: 2 s)
# The modules whose code shapes a cached result: a changed loader never reads an old entry.
_READING_CODE = ("data.py", "readers.py", "csvshape.py", "fileformats.py", "model.py",
                 "timegrid.py")  # fmt: skip


@cache
def _code_fingerprint() -> str:
    digest = hashlib.sha256()
    for module in _READING_CODE:
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()


@dataclass
class FileReport:
    """What reading one file found: its datasets' summaries, counts and problems."""

    spec_index: int
    path: str  # as shown to the user
    file: str  # as the manifest's spec lists it (absolute): where to read it again
    summaries: list[DatasetSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    values: int = 0
    missing_cells: dict[str, int] = field(default_factory=dict)  # spelling -> cells skipped

    @property
    def has_errors(self) -> bool:
        return any(p.is_error for p in self.problems)


def cache_dir() -> Path | None:
    if os.environ.get("FLOWKIT_LOADER_NO_CACHE"):
        return None
    configured = os.environ.get("FLOWKIT_LOADER_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowkit-loader"


@dataclass(frozen=True)
class _CacheKey:
    """Which cache entry a file's summaries are in, and the newest of its timestamps."""

    name: str
    stamp_ns: int


def _cache_key(
    spec: DatasetSpec, path: str, setup: SetupConfig, file_format: str
) -> _CacheKey | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    spatial = setup.spatial[spec.spatial_resolution]
    temporal = setup.temporal[spec.temporal_resolution]
    category = setup.categories[spec.category_id]
    parts = [
        CACHE_VERSION,
        DIGEST_VERSION,
        _code_fingerprint(),
        os.path.abspath(path),
        # A same-length edit keeps size and can keep mtime (`touch -r`, tools that set a
        # fixed one); it cannot keep the inode's change time, which only the kernel sets.
        # A file replaced by another (an atomic save) has another inode.
        stat.st_dev,
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
        spec.pattern,
        file_format,
        spec.category_id,
        spec.date_column,
        list(spec.unit_columns),
        sorted(spec.indicator_columns.items()),
        sorted(spec.exclude),
        list(spec.missing),
        spec.revision,
        spec.date_format,
        [spatial.srid, spatial.label, spatial.unit_property, sorted(spatial.unit_codes or ())],
        [temporal.trid, temporal.unit, temporal.step, temporal.date_format, temporal.label],
        [category.data_type, list(category.indicators)],
    ]
    name = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return _CacheKey(name, max(stat.st_mtime_ns, stat.st_ctime_ns))


def _is_racy(key: _CacheKey, read_started_ns: int) -> bool:
    """git's "racily clean" rule: a file whose timestamps lie within the filesystem's
    granularity of the moment it was read may change again without its timestamps
    changing (FAT keeps 2 s, some network filesystems 1 s), so its entry is not trusted;
    the next run reads the file again, and keeps the entry once the file is old enough."""
    return key.stamp_ns > read_started_ns - RACY_NANOS


def _save(path: Path, report: FileReport, racy: bool) -> None:
    payload = {
        "racy": racy,
        "rows": report.rows,
        "values": report.values,
        "missing_cells": report.missing_cells,
        "summaries": [
            {
                "key": s.key.to_json(),
                "data_type": s.data_type,
                "revision": s.revision,
                "digest": s.digest,
                "stats": [s.stats.count, str(s.stats.sum), s.stats.min, s.stats.max],
                "source": s.source,
            }
            for s in report.summaries
        ],
        "problems": [
            [p.position.line, p.position.column, p.message, p.severity.value, p.position.row]
            for p in report.problems
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


def _load(path: Path, report: FileReport) -> bool:
    try:
        payload = json.loads(path.read_text())
        if payload["racy"] is not False:
            return False
        report.rows = payload["rows"]
        report.values = payload["values"]
        report.missing_cells = {
            str(spelling): int(count) for spelling, count in payload["missing_cells"].items()
        }
        report.summaries = [
            DatasetSummary(
                key=DatasetKey.from_json(s["key"]),
                data_type=s["data_type"],
                revision=s["revision"],
                digest=s["digest"],
                stats=DatasetStats(s["stats"][0], int(s["stats"][1]), s["stats"][2], s["stats"][3]),
                source=s["source"],
            )
            for s in payload["summaries"]
        ]
        report.problems = [
            Problem(Position(report.path, line, column, row), message, Severity(severity))
            for line, column, message, severity, row in payload["problems"]
        ]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def summarize_file(
    spec: DatasetSpec, path: str, setup: SetupConfig, shown: str | None = None
) -> FileReport:
    """Summaries and problems of one file, from the cache when the file is unchanged."""
    directory = cache_dir()
    file_format = format_of(path, spec.format).name
    key = _cache_key(spec, path, setup, file_format) if directory else None
    entry = directory / f"{key.name}.json" if directory is not None and key else None
    report = FileReport(spec.index, shown or path, path)
    if entry is not None and _load(entry, report):
        return report
    started = time.time_ns()
    from loader.data import FileDatasets  # pandas (and pyarrow): only when a file is read

    reading = FileDatasets(spec, path, setup, shown)
    for _ in reading.datasets():
        pass
    if entry is not None and key is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            _save(entry, reading.report, racy=_is_racy(key, started))
    return reading.report


__all__ = ["CACHE_VERSION", "FileReport", "summarize_file"]
