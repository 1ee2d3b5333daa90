"""CSV files -> canonical datasets (one per indicator per date), and the data problems
found on the way. pandas lives here and nowhere else.

A canonical dataset is exactly what the backend will store and what plan compares:
values rounded to 9 decimals half away from zero, as DECIMAL(20,9) keeps them (and that
rounded value is what is sent), units sorted, a digest over identity, revision, units and
values, and the count, sum, min and max beside it.

Work is vectorised: pandas parses, numpy converts and sorts; Python touches only what is
few (unique dates, unique unit codes, the problems to report). Files are read in chunks;
a file above SINGLE_PASS_BYTES is read twice (first its date column only) so that each
date's datasets are emitted as soon as its last row is read. Memory is then bounded by
one date's datasets (several times that date's share of the CSV) plus one chunk when the
file is grouped by date; a file that scatters a date over its whole length keeps those
dates pending until their last row. A cache keyed by path, size and modification time
spares re-reading unchanged files when only summaries are needed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import time
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loader.csvshape import field_starts, locate_rows, scan_shape
from loader.model import (
    DIGEST_VERSION,
    MAX_ABS_VALUE,
    NANOS_PER_UNIT,
    Category,
    Dataset,
    DatasetKey,
    DatasetSpec,
    DatasetStats,
    DatasetSummary,
    Position,
    Problem,
    SetupConfig,
    Severity,
    SpatialResolution,
    canonical_nanos,
    dataset_digest,
    excerpt,
)
from loader.timegrid import DateError, Grid, backend_dt, parse_data_date

# Rows per chunk: large enough for pandas to be fast, small enough that a chunk's parsed
# frames weigh little beside one date's datasets (bench/prepare.py --large measures it).
CHUNK_ROWS = 250_000
SINGLE_PASS_BYTES = 16 * 2**20  # files above this are read in two passes
CACHE_VERSION = 3  # 3: keys as DatasetKey.to_json objects
RACY_NANOS = 2 * 10**9  # the coarsest timestamps a filesystem may keep (FAT: 2 s)


@cache
def _code_fingerprint() -> str:
    """Cached results depend on this code: a changed loader never reads an old entry."""
    digest = hashlib.sha256()
    for module in ("data.py", "model.py", "timegrid.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()


_UNIT_ROLES = {1: ("spatial unit",), 2: ("origin", "destination")}


@cache
def _read_as_number(spelling: str) -> bool:
    """Whether pandas' CSV parser reads this cell as a number (asked, not guessed: it
    reads `inf` and `-999` as numbers, but not `NaN` or `1_000`)."""
    if not spelling:
        return False
    cell = '"' + spelling.replace('"', '""') + '"'
    frame = pd.read_csv(io.StringIO(f"x\n{cell}\n"), keep_default_na=False, na_values=[""])
    return bool(pd.api.types.is_numeric_dtype(frame["x"].dtype))


# ---------------------------------------------------------------------------------------
# Exact, vectorised value conversion


def to_nanos(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Canonical nanos of finite floats with |v| <= 2**31, vectorised.

    Integers convert exactly. For the rest, x * 1e9 rounded is the answer whenever it is
    farther from a rounding tie than the error of the float product plus the distance
    between x and its shortest decimal text (which the canonical value is defined on).
    The few cells that are not (true ties such as 0.1234567895, or non-integers above
    ~4.5e6 where a float has fewer than 9 decimals) take the exact decimal path.
    """
    x = np.asarray(values, dtype=np.float64)
    result = np.zeros(x.shape, dtype=np.int64)
    whole = np.trunc(x)
    integral = whole == x
    result[integral] = whole[integral].astype(np.int64) * NANOS_PER_UNIT
    fractional = np.flatnonzero(~integral)
    if fractional.size:
        f = x[fractional]
        scaled = np.abs(f) * 1e9
        floor = np.floor(scaled)
        remainder = scaled - floor
        tolerance = np.spacing(scaled) + 1e9 * np.spacing(np.abs(f))
        safe = (np.abs(remainder - 0.5) > 2 * tolerance) & (scaled < 2.0**53)
        rounded = (floor + (remainder > 0.5)).astype(np.int64) * np.sign(f).astype(np.int64)
        result[fractional[safe]] = rounded[safe]
        for index in fractional[~safe]:  # the exact path, for the ambiguous few
            result[index] = canonical_nanos(float(x[index]))
    return result


def nanos_stats(nanos: np.ndarray[Any, np.dtype[np.int64]]) -> DatasetStats:
    """Exact count, sum, min and max (the sum is split so that int64 cannot overflow)."""
    whole, frac = np.divmod(nanos, NANOS_PER_UNIT)
    total = int(whole.sum()) * NANOS_PER_UNIT + int(frac.sum())
    return DatasetStats(len(nanos), total, int(nanos.min()), int(nanos.max()))


# ---------------------------------------------------------------------------------------
# Problems found in a file, resolved to physical lines and columns only when reported


@dataclass
class _Finding:
    """One kind of problem in one column: where it first occurs and how often."""

    kind: str
    column: str
    row: int  # data row (0-based, as pandas counts with blank lines kept)
    count: int = 1
    detail: str = ""  # e.g. the date text or unit code
    other_row: int | None = None  # e.g. the first of two duplicate rows
    severity: Severity = Severity.ERROR


class _Findings:
    """Aggregates cell problems per (kind, column, detail) so a broken column of a
    million rows makes one line, not a million."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], _Finding] = {}

    def add(
        self,
        kind: str,
        column: str,
        rows: np.ndarray[Any, Any],
        detail: str = "",
        other_row: int | None = None,
        severity: Severity = Severity.ERROR,
    ) -> None:
        if not len(rows):
            return
        key = (kind, column, detail)
        found = self.items.get(key)
        first = int(np.min(rows))
        if found is None:
            self.items[key] = _Finding(kind, column, first, len(rows), detail, other_row, severity)
        else:
            found.count += len(rows)
            if first < found.row:
                found.row, found.other_row = first, other_row


# ---------------------------------------------------------------------------------------
# Reading one file


def _refused(column: str) -> str:
    """The name of the frame column that marks a column's refused cells (cannot clash with
    a CSV column name, which holds no NUL)."""
    return f"\0refused:{column}"


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


class CsvDatasets:
    """The canonical datasets of one CSV file of one manifest entry."""

    def __init__(
        self, spec: DatasetSpec, path: str, setup: SetupConfig, shown: str | None = None
    ) -> None:
        self.spec = spec
        self.path = path
        self.setup = setup
        self.category: Category = setup.categories[spec.category_id]
        self.spatial: SpatialResolution = setup.spatial[spec.spatial_resolution]
        resolution = setup.temporal[spec.temporal_resolution]
        self.trid = resolution.trid
        self.grid = Grid.of(resolution)
        self.report = FileReport(spec.index, shown or path, path)
        self.findings = _Findings()
        self.header: list[str] = []
        self.indicators: dict[str, str] = {}  # column -> indicator id
        self.dates: dict[str, str | None] = {}  # cell text -> backend dt, None if invalid
        self.header_problems: list[Problem] = []
        self.unreadable = False  # pandas could not parse the file

    # -- header -------------------------------------------------------------------------

    def at(self, line: int, column: int) -> Position:
        return Position(self.report.path, line, column)

    def read_header(self) -> bool:
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                first_line = handle.readline()
        except (OSError, UnicodeDecodeError) as error:
            self.header_problems.append(Problem(self.at(1, 1), f"cannot read file: {error}"))
            return False
        header = next(csv.reader([first_line]), [])
        if not any(h.strip() for h in header):
            self.header_problems.append(Problem(self.at(1, 1), "empty file: no header line"))
            return False
        starts = field_starts(first_line.rstrip("\r\n"))
        self.header = header
        seen: set[str] = set()
        ok = True
        for index, name in enumerate(header):
            if name in seen:
                self.header_problems.append(
                    Problem(self.at(1, starts[index] + 1), f"duplicate column '{excerpt(name)}'")
                )
                ok = False
            seen.add(name)
        spec = self.spec
        roles = [("date", spec.date_column)]
        unit_roles = ("spatial_unit",) if len(spec.unit_columns) == 1 else ("origin", "destination")
        roles += list(zip(unit_roles, spec.unit_columns, strict=True))
        for role, name in roles:
            if name not in seen:
                self.header_problems.append(
                    Problem(self.at(1, 1), f"missing column '{name}' (columns.{role})")
                )
                ok = False
        keys = {spec.date_column, *spec.unit_columns}
        column_of: dict[str, int] = {}  # indicator -> the header index that maps to it
        for index, name in enumerate(header):
            if name in keys or name in spec.exclude or name in self.indicators:
                continue
            indicator = spec.indicator_columns.get(name, f"{spec.category_id}.{name}")
            if indicator not in self.category.indicators:
                self.header_problems.append(
                    Problem(
                        self.at(1, starts[index] + 1),
                        f"column '{excerpt(name)}' maps to no indicator: '{excerpt(indicator)}' "
                        f"is not an indicator of category '{spec.category_id}' (map it under "
                        "indicators, or list it under exclude)",
                    )
                )
            elif indicator in column_of:
                # Both would claim one dataset per date: every apply would see the data
                # "changed since the plan". Only one column may feed an indicator.
                first = column_of[indicator]
                self.header_problems.append(
                    Problem(
                        self.at(1, starts[index] + 1),
                        f"columns '{excerpt(header[first])}' (column {starts[first] + 1}) and "
                        f"'{excerpt(name)}' both map to indicator '{indicator}': map one of "
                        "them to another indicator under indicators, or list it under exclude",
                    )
                )
                ok = False
            else:
                column_of[indicator] = index
                self.indicators[name] = indicator
        return ok

    # -- rows ---------------------------------------------------------------------------

    def datasets(self) -> Iterator[Dataset]:
        """Yield every canonical dataset of the file; `report` is complete afterwards."""
        try:
            header_ok = self.read_header()
            # A record whose fields do not line up with the header would be read shifted
            # or cut: nothing of such a file is read until its shape is right.
            shape_ok = bool(self.header) and self.check_shape()
            if header_ok and shape_ok and self.indicators:
                yield from self._read_rows()
        finally:
            self._finish_problems()

    def check_shape(self) -> bool:
        """Every record has the header's number of fields; a file with no data row at
        all is worth a warning (it loads nothing)."""
        try:
            shape = scan_shape(self.path)
        except OSError as error:
            self.header_problems.append(Problem(self.at(1, 1), f"cannot read file: {error}"))
            return False
        for ragged in shape.ragged:
            fields = f"{ragged.fields} field{'' if ragged.fields == 1 else 's'}"
            message = f"{fields}, the header has {shape.header_fields}"
            if ragged.last_line > ragged.line:
                message += (
                    f" (the record runs to line {ragged.last_line}: a quoted field holds "
                    "line breaks, or a quote is not closed where it should be)"
                )
            if shape.ragged_count > 1:
                message += f" (and {shape.ragged_count - 1} more)"
            self.header_problems.append(Problem(Position(self.report.path, ragged.line), message))
        if shape.unterminated_line is not None:
            self.header_problems.append(
                Problem(
                    Position(self.report.path, shape.unterminated_line),
                    "a quoted field opens here and is never closed",
                )
            )
        if not shape.records and not shape.ragged_count and shape.unterminated_line is None:
            self.header_problems.append(
                Problem(
                    Position(self.report.path),
                    "no data rows: the file has only its header, so it loads nothing",
                    Severity.WARNING,
                )
            )
        return not shape.ragged_count and shape.unterminated_line is None

    def _read_rows(self) -> Iterator[Dataset]:
        spec = self.spec
        keys = [spec.date_column, *spec.unit_columns]
        columns = keys + list(self.indicators)
        last_chunk = self._last_chunk_per_date() if self._two_pass() else None
        if self.unreadable:
            return
        pending: dict[str, list[pd.DataFrame]] = {}
        dtypes: dict[str, Any] = dict.fromkeys(keys, "category")
        if any(_read_as_number(s) for s in spec.missing):
            # pandas would read such a spelling (`-999`, `Inf`) as a number and lose it:
            # the indicator columns are read as text, then converted here.
            dtypes.update(dict.fromkeys(self.indicators, object))
        chunks = self._chunks(columns, dtypes)
        for number, chunk in enumerate(chunks):
            for dt, part in self._clean(chunk):
                pending.setdefault(dt, []).append(part)
            del chunk  # not alive while the next one is parsed
            complete = [
                dt for dt in pending if last_chunk is not None and last_chunk.get(dt, -1) <= number
            ]
            for dt in sorted(complete):
                yield from self._date_datasets(dt, pending.pop(dt))
        for dt in sorted(pending):
            yield from self._date_datasets(dt, pending.pop(dt))

    def _chunks(self, usecols: list[str], dtypes: Mapping[str, Any]) -> Iterator[pd.DataFrame]:
        """The file's chunks; a file pandas cannot parse becomes one problem."""
        try:
            reader = pd.read_csv(
                self.path,
                encoding="utf-8-sig",
                usecols=usecols,
                dtype=dict(dtypes),
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                chunksize=CHUNK_ROWS,
                engine="c",
            )
            with reader:
                while True:
                    try:
                        chunk = next(reader)
                    except StopIteration:
                        return
                    yield chunk
        except (
            pd.errors.ParserError,
            pd.errors.EmptyDataError,
            UnicodeDecodeError,
            ValueError,
        ) as error:
            text = str(error).strip()
            message = text.splitlines()[-1] if text else type(error).__name__
            self.header_problems.append(Problem(self.at(1, 1), f"cannot parse CSV: {message}"))
            self.unreadable = True

    def _two_pass(self) -> bool:
        try:
            return os.path.getsize(self.path) > SINGLE_PASS_BYTES
        except OSError:
            return False

    def _last_chunk_per_date(self) -> dict[str, int]:
        """Pass one of a large file: the last chunk in which each date appears."""
        last: dict[str, int] = {}
        for number, chunk in enumerate(
            self._chunks([self.spec.date_column], {self.spec.date_column: "category"})
        ):
            dates = chunk[self.spec.date_column]
            for text in dates.cat.categories[np.unique(dates.cat.codes[dates.cat.codes >= 0])]:
                dt = self._parse_date(str(text))
                if dt is not None:
                    last[dt] = number
        return last

    def _parse_date(self, text: str) -> str | None:
        if text in self.dates:
            return self.dates[text]
        try:
            moment = parse_data_date(text, self.grid, self.spec.date_format)
        except DateError:
            self.dates[text] = None
            return None
        self.dates[text] = backend_dt(moment) if self.grid.is_on_grid(moment) else None
        return self.dates[text]

    def _date_problem(self, text: str, rows: np.ndarray[Any, Any]) -> None:
        try:
            moment = parse_data_date(text, self.grid, self.spec.date_format)
        except DateError as error:
            self.findings.add("date", self.spec.date_column, rows, str(error))
            return
        label = self.spec.temporal_resolution
        self.findings.add(
            "date",
            self.spec.date_column,
            rows,
            f"date '{text}' ({backend_dt(moment)}) is not on the {label} grid: "
            f"expected {self.grid.expected()}",
        )

    def _clean(self, chunk: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
        """Check one chunk; yield its valid rows grouped by backend dt."""
        spec = self.spec
        rows = chunk.index.to_numpy()
        blank = chunk.isna().all(axis=1).to_numpy()
        self.report.rows += int((~blank).sum())
        ok = ~blank
        dates = chunk[spec.date_column]
        codes = dates.cat.codes.to_numpy()
        missing = (codes < 0) & ~blank
        self.findings.add("missing", spec.date_column, rows[missing], "date")
        ok &= ~missing
        dt_of_code = np.array(
            [self._parse_date(str(t)) or "" for t in dates.cat.categories], dtype=object
        )
        for code in np.flatnonzero(dt_of_code == ""):
            bad = (codes == code) & ~blank
            self._date_problem(str(dates.cat.categories[int(code)]), rows[bad])
            ok &= ~bad
        for role, column in zip(
            _UNIT_ROLES[len(spec.unit_columns)], spec.unit_columns, strict=True
        ):
            units = chunk[column]
            unit_codes = units.cat.codes.to_numpy()
            missing = (unit_codes < 0) & ~blank
            self.findings.add("missing", column, rows[missing], role)
            ok &= ~missing
            known = self.spatial.unit_codes
            if known is not None:
                categories = units.cat.categories.astype(str)
                unknown = np.flatnonzero(~categories.isin(list(known)))
                for code in unknown:
                    bad = (unit_codes == code) & ~blank
                    self.findings.add("unit", column, rows[bad], str(categories[int(code)]))
                    ok &= ~bad
        values: dict[str, np.ndarray[Any, Any]] = {}
        refused: dict[str, np.ndarray[Any, Any]] = {}
        for column in self.indicators:
            values[column], refused[column] = self._values(column, chunk[column], rows, blank)
        valid = pd.DataFrame(
            {
                "_row": rows[ok],
                "_dt": dt_of_code[codes[ok]] if len(dt_of_code) else np.array([], dtype=object),
                **{
                    f"_u{i}": np.asarray(chunk[c].cat.categories.astype(str), dtype=object)[
                        chunk[c].cat.codes.to_numpy()[ok]
                    ]
                    for i, c in enumerate(spec.unit_columns)
                },
                **{c: v[ok] for c, v in values.items()},
                **{_refused(c): r[ok] for c, r in refused.items()},
            }
        )
        for dt, part in valid.groupby("_dt", sort=False):
            # A copy: a group is a view that would keep the whole chunk alive while pending.
            yield str(dt), part.copy()

    def _values(
        self,
        column: str,
        series: pd.Series[Any],
        rows: np.ndarray[Any, Any],
        blank: np.ndarray[Any, Any],
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The column as floats, NaN where missing or invalid; and where it was invalid
        (invalid cells are reported, missing ones counted per spelling)."""
        spellings = [s for s in self.spec.missing if s]
        if pd.api.types.is_numeric_dtype(series.dtype):
            # No text in the column: the only missing cells are the empty ones.
            numbers = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            empty = np.isnan(numbers) & ~blank
            refused = np.zeros(len(numbers), dtype=bool)
        else:
            text = series.astype(object)
            empty = text.isna().to_numpy() & ~blank
            spelled = text.isin(spellings).to_numpy() if spellings else np.zeros(len(text), bool)
            if spelled.any():
                for spelling, count in text[spelled].value_counts().items():
                    self._count_missing(str(spelling), int(count))
                text = text.where(~spelled)
            numbers = pd.to_numeric(text, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan, copy=True
            )
            written = text.notna().to_numpy()
            # pd.to_numeric reads the text 'NaN' as a number: it is not one here.
            nan_text = (
                written
                & ~np.isnan(numbers)
                & text.astype(str).str.strip().str.lower().isin(["nan", "-nan", "+nan"]).to_numpy()
            )
            bad = written & (np.isnan(numbers) | nan_text)
            self.findings.add("number", column, rows[bad])
            numbers[bad] = np.nan
            refused = bad
        if "" in self.spec.missing:
            self._count_missing("", int(empty.sum()))
        else:
            self.findings.add("empty", column, rows[empty])
            refused = refused | empty
        infinite = np.isinf(numbers)
        self.findings.add("finite", column, rows[infinite])
        numbers[infinite] = np.nan
        too_big = np.abs(np.nan_to_num(numbers)) > MAX_ABS_VALUE
        self.findings.add("range", column, rows[too_big])
        numbers[too_big] = np.nan
        return numbers, refused | infinite | too_big

    def _count_missing(self, spelling: str, count: int) -> None:
        if count:
            missing = self.report.missing_cells
            missing[spelling] = missing.get(spelling, 0) + count

    # -- one date -----------------------------------------------------------------------

    def _date_datasets(self, dt: str, parts: list[pd.DataFrame]) -> Iterator[Dataset]:
        frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        unit_arrays = [frame[f"_u{i}"].to_numpy() for i in range(len(self.spec.unit_columns))]
        unit_codes = [pd.factorize(u, sort=True)[0] for u in unit_arrays]
        order = np.lexsort(unit_codes[::-1])
        rows = frame["_row"].to_numpy()[order]
        sorted_codes = [c[order] for c in unit_codes]
        sorted_units = [u[order] for u in unit_arrays]
        keep = np.ones(len(order), dtype=bool)
        if len(order) > 1:
            same = np.ones(len(order) - 1, dtype=bool)
            for codes in sorted_codes:
                same &= codes[1:] == codes[:-1]
            duplicates = np.flatnonzero(same) + 1
            for index in duplicates:
                first = index - 1
                while first > 0 and not keep[first]:
                    first -= 1
                units = " -> ".join(str(u[index]) for u in sorted_units)
                self.findings.add(
                    "duplicate",
                    self.spec.date_column,
                    rows[[index]],
                    f"{dt[:10]} {units}",
                    other_row=int(rows[first]),
                )
            keep[duplicates] = False
        if not keep.all():
            rows = rows[keep]
            sorted_units = [u[keep] for u in sorted_units]
            order = order[keep]
        lines = (
            sorted_units[0] if len(sorted_units) == 1 else sorted_units[0] + "\t" + sorted_units[1]
        )
        for column, indicator in self.indicators.items():
            values = frame[column].to_numpy()[order]
            present = ~np.isnan(values)
            count = int(present.sum())
            if not count:
                if frame[_refused(column)].any():
                    continue  # its values were refused: reported as errors already
                self.findings.add(
                    "novalue",
                    column,
                    frame["_row"].to_numpy()[:1],
                    f"{indicator} on {dt[:10]}",
                    severity=Severity.WARNING,
                )
                continue
            nanos = to_nanos(values[present])
            present_units = [u[present] for u in sorted_units]
            yield self._dataset(indicator, dt, present_units, lines[present], nanos)

    def _dataset(
        self,
        indicator: str,
        dt: str,
        units: list[np.ndarray[Any, Any]],
        lines: np.ndarray[Any, Any],
        nanos: np.ndarray[Any, np.dtype[np.int64]],
    ) -> Dataset:
        key = DatasetKey(self.spec.category_id, indicator, self.spatial.srid, self.trid, dt)
        digest = dataset_digest(
            key,
            self.spec.revision,
            self.category.data_type,
            "\n".join(lines.tolist()),
            nanos.astype("<i8").tobytes(),
        )
        summary = DatasetSummary(
            key=key,
            data_type=self.category.data_type,
            revision=self.spec.revision,
            digest=digest,
            stats=nanos_stats(nanos),
            source=self.spec.pattern if len(self.spec.files) == 1 else self.report.path,
        )
        self.report.summaries.append(summary)
        self.report.values += len(nanos)
        values = array("q")
        values.frombytes(nanos.tobytes())  # 8 bytes a value, where a list of ints takes ~36
        return Dataset(summary, tuple(u.tolist() for u in units), values)

    # -- reporting ----------------------------------------------------------------------

    def _finish_problems(self) -> None:
        findings = sorted(self.findings.items.values(), key=lambda f: (f.row, f.kind, f.column))
        wanted = {f.row for f in findings} | {
            f.other_row for f in findings if f.other_row is not None
        }
        located = locate_rows(self.path, wanted) if wanted else {}
        column_index = {name: i for i, name in enumerate(self.header)}
        problems = list(self.header_problems)
        for finding in findings:
            first_line, raw, fields = located.get(finding.row, (finding.row + 2, "", []))
            index = column_index.get(finding.column, 0)
            starts = field_starts(raw) if raw else [0]
            offset = starts[index] if index < len(starts) else 0
            # A quoted field may have carried the record over several physical lines.
            line = first_line + raw.count("\n", 0, offset)
            column = offset - (raw.rfind("\n", 0, offset) + 1) + 1
            cell = fields[index] if index < len(fields) else ""
            message = self._message(finding, cell, located)
            if finding.count > 1:
                message += f" (and {finding.count - 1} more)"
            problems.append(Problem(self.at(line, column), message, finding.severity))
        self.report.problems = problems

    def _message(
        self, finding: _Finding, cell: str, located: Mapping[int, tuple[int, str, list[str]]]
    ) -> str:
        column = finding.column
        if finding.kind == "missing":
            return f"missing {finding.detail} in column '{column}'"
        if finding.kind == "date":
            return finding.detail
        if finding.kind == "unit":
            prop = self.spatial.unit_property or "unit code"
            return (
                f"unknown spatial unit '{excerpt(finding.detail)}' in column '{column}': not "
                "among the "
                f"{prop} codes of '{self.spatial.label}'"
            )
        if finding.kind == "number":
            return f"not a number: '{excerpt(cell)}' in column '{column}'"
        if finding.kind == "empty":
            return f"empty cell in column '{column}': the empty cell is not listed under missing"
        if finding.kind == "finite":
            return (
                f"value '{excerpt(cell)}' in column '{column}' is not finite (list its "
                "spelling under missing to skip it)"
            )
        if finding.kind == "range":
            return (
                f"value '{excerpt(cell)}' in column '{column}' is out of the backend's range "
                f"(|v| <= {MAX_ABS_VALUE:,})"
            )
        if finding.kind == "duplicate":
            assert finding.other_row is not None
            first = located.get(finding.other_row, (finding.other_row + 2, "", []))[0]
            return f"duplicate row for {excerpt(finding.detail)} (first on line {first})"
        return (
            f"no value for {finding.detail}: that dataset is not sent "
            "(the backend refuses an empty dataset)"
        )


# ---------------------------------------------------------------------------------------
# The cache of summaries


def _cache_dir() -> Path | None:
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


def _cache_key(spec: DatasetSpec, path: str, setup: SetupConfig) -> _CacheKey | None:
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
            [p.position.line, p.position.column, p.message, p.severity.value]
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
            Problem(Position(report.path, line, column), message, Severity(severity))
            for line, column, message, severity in payload["problems"]
        ]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def summarize_file(
    spec: DatasetSpec, path: str, setup: SetupConfig, shown: str | None = None
) -> FileReport:
    """Summaries and problems of one file, from the cache when the file is unchanged."""
    directory = _cache_dir()
    key = _cache_key(spec, path, setup) if directory else None
    entry = directory / f"{key.name}.json" if directory is not None and key else None
    report = FileReport(spec.index, shown or path, path)
    if entry is not None and _load(entry, report):
        return report
    started = time.time_ns()
    reader = CsvDatasets(spec, path, setup, shown)
    for _ in reader.datasets():
        pass
    if entry is not None and key is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            _save(entry, reader.report, racy=_is_racy(key, started))
    return reader.report


def read_datasets(
    spec: DatasetSpec, path: str, setup: SetupConfig, shown: str | None = None
) -> tuple[Iterator[Dataset], FileReport]:
    """The canonical datasets of one file with their values (for apply and comparison)."""
    reader = CsvDatasets(spec, path, setup, shown)
    return reader.datasets(), reader.report


__all__ = [
    "CsvDatasets",
    "FileReport",
    "read_datasets",
    "summarize_file",
    "to_nanos",
]
