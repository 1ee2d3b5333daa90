"""Data files -> canonical datasets (one per indicator per date), and the data problems
found on the way. The rows come from a reader (loader/readers.py: CSV, compressed or not,
and Parquet); what they mean, and every check of them, is here.

A canonical dataset is exactly what the backend will store and what plan compares:
values rounded to 9 decimals half away from zero, as DECIMAL(20,9) keeps them (and that
rounded value is what is sent), units sorted, a digest over identity, revision, units and
values, and the count, sum, min and max beside it.

Work is vectorised: pandas parses, numpy converts and sorts; Python touches only what is
few (unique dates, unique unit codes, the problems to report). Files are read in chunks;
a large file is read twice (first its date column only) so that each date's datasets are
emitted as soon as its last row is read. Memory is then bounded by one date's datasets
(several times that date's share of the file) plus one chunk when the file is grouped by
date; a file that scatters a date over its whole length keeps those dates pending until
their last row. loader/summaries.py caches what a file gives a plan.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from loader.fileformats import format_of
from loader.model import (
    MAX_ABS_VALUE,
    NANOS_PER_UNIT,
    Category,
    Dataset,
    DatasetKey,
    DatasetSpec,
    DatasetStats,
    DatasetSummary,
    Problem,
    SetupConfig,
    Severity,
    SpatialResolution,
    canonical_nanos,
    dataset_digest,
    excerpt,
)
from loader.readers import Chunk, Place, reader_for
from loader.summaries import FileReport, summarize_file
from loader.timegrid import DateError, Grid, backend_dt, parse_data_date

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


def _exact(column: str) -> str:
    """The frame column of a column's exact nanos (Parquet decimals)."""
    return f"\0exact:{column}"


# How the report counts the null cells of a typed file (among the `missing` spellings).
NULL = "null"


class FileDatasets:
    """The canonical datasets of one data file of one manifest entry: its rows, as a
    reader gives them, checked and turned into datasets."""

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
        self.reader = reader_for(path, self.report.path, format_of(path, spec.format))
        self.findings = _Findings()
        self.header: list[str] = []
        self.indicators: dict[str, str] = {}  # column -> indicator id
        self.dates: dict[str, str | None] = {}  # cell text -> backend dt, None if invalid
        self.header_problems: list[Problem] = []
        # A column of typed dates (Parquet) reads as ISO text: a date_format is for text.
        self.date_format = spec.date_format

    # -- header -------------------------------------------------------------------------

    def read_header(self) -> bool:
        header = self.reader.header()
        if header is None:
            return False
        self.header = header
        at = self.reader.header_position
        seen: set[str] = set()
        ok = True
        for index, name in enumerate(header):
            if name in seen:
                self.header_problems.append(
                    Problem(at(index), f"duplicate column '{excerpt(name)}'")
                )
                ok = False
            seen.add(name)
        spec = self.spec
        roles = [("date", spec.date_column)]
        unit_roles = ("spatial_unit",) if len(spec.unit_columns) == 1 else ("origin", "destination")
        roles += list(zip(unit_roles, spec.unit_columns, strict=True))
        start = at(0)
        for role, name in roles:
            if name not in seen:
                self.header_problems.append(
                    Problem(start, f"missing column '{name}' (columns.{role})")
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
                        at(index),
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
                        at(index),
                        f"columns '{excerpt(header[first])}' (column {self._column_number(first)}) "
                        f"and '{excerpt(name)}' both map to indicator '{indicator}': map one of "
                        "them to another indicator under indicators, or list it under exclude",
                    )
                )
                ok = False
            else:
                column_of[indicator] = index
                self.indicators[name] = indicator
        return ok

    def _column_number(self, index: int) -> int:
        """How a message names a header column: the text column where it starts (CSV),
        else its place in the header, from 1."""
        return self.reader.header_position(index).column or index + 1

    # -- rows ---------------------------------------------------------------------------

    def datasets(self) -> Iterator[Dataset]:
        """Yield every canonical dataset of the file; `report` is complete afterwards."""
        try:
            header_ok = self.read_header()
            # A record whose fields do not line up with the header would be read shifted
            # or cut: nothing of such a file is read until its shape is right.
            shape_ok = bool(self.header) and self.reader.check(
                self.spec.date_column, self.spec.unit_columns, list(self.indicators)
            )
            if self.reader.typed_dates(self.spec.date_column):
                self.date_format = None
            if header_ok and shape_ok and self.indicators:
                yield from self._read_rows()
        finally:
            self._finish_problems()

    def _read_rows(self) -> Iterator[Dataset]:
        spec = self.spec
        keys = [spec.date_column, *spec.unit_columns]
        last_chunk = self._last_chunk_per_date() if self.reader.is_large() else None
        if self.reader.failed:
            return
        pending: dict[str, list[pd.DataFrame]] = {}
        # pandas would read such a spelling (`-999`, `Inf`) as a number and lose it: the
        # indicator columns of a CSV are then read as text, and converted here.
        as_text = any(_read_as_number(s) for s in spec.missing)
        chunks = self.reader.chunks(keys, list(self.indicators), as_text)
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

    def _last_chunk_per_date(self) -> dict[str, int]:
        """Pass one of a large file: the last chunk in which each date appears."""
        last: dict[str, int] = {}
        for number, chunk in enumerate(self.reader.chunks([self.spec.date_column], [])):
            dates = chunk.frame[self.spec.date_column]
            for text in dates.cat.categories[np.unique(dates.cat.codes[dates.cat.codes >= 0])]:
                dt = self._parse_date(str(text))
                if dt is not None:
                    last[dt] = number
        return last

    def _parse_date(self, text: str) -> str | None:
        if text in self.dates:
            return self.dates[text]
        try:
            moment = parse_data_date(text, self.grid, self.date_format)
        except DateError:
            self.dates[text] = None
            return None
        self.dates[text] = backend_dt(moment) if self.grid.is_on_grid(moment) else None
        return self.dates[text]

    def _date_problem(self, text: str, rows: np.ndarray[Any, Any]) -> None:
        try:
            moment = parse_data_date(text, self.grid, self.date_format)
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

    def _clean(self, read: Chunk) -> Iterator[tuple[str, pd.DataFrame]]:
        """Check one chunk; yield its valid rows grouped by backend dt."""
        spec = self.spec
        chunk = read.frame
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
            values[column], refused[column] = self._values(
                column, chunk[column], rows, blank, read.nulls.get(column)
            )
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
                **{_exact(c): nanos[ok] for c, nanos in read.exact.items()},
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
        nulls: np.ndarray[Any, Any] | None = None,
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The column as floats, NaN where missing or invalid; and where it was invalid
        (invalid cells are reported, missing ones counted per spelling). `nulls` marks
        the cells of a typed file (Parquet) that hold nothing: missing, whatever the
        manifest's `missing` says; there, an empty cell is an empty text."""
        spellings = [s for s in self.spec.missing if s]
        if nulls is not None:
            null = nulls & ~blank
            self._count_missing(NULL, int(null.sum()))
        else:
            null = np.zeros(len(series), dtype=bool)
        if pd.api.types.is_numeric_dtype(series.dtype):
            numbers = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            if nulls is None:  # a CSV column with no text: its only gaps are empty cells
                empty = np.isnan(numbers) & ~blank
                refused = np.zeros(len(numbers), dtype=bool)
            else:  # a typed column: a NaN that is not a null is a float's NaN
                empty = np.zeros(len(numbers), dtype=bool)
                refused = np.isnan(numbers) & ~null & ~blank
                self.findings.add("number", column, rows[refused])
        else:
            text = series.astype(object)
            if nulls is None:  # a CSV: its empty cells were read as NaN
                empty = text.isna().to_numpy() & ~blank
            else:  # a typed file: an empty text is the empty cell (a null is counted above)
                is_empty = (text == "").to_numpy()
                empty = is_empty & ~blank
                text = text.where(~is_empty)
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
            exact = frame.get(_exact(column))
            nanos = to_nanos(values[present]) if exact is None else exact.to_numpy()[order][present]
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
        located = self.reader.locate(wanted) if wanted else {}
        column_index = {name: i for i, name in enumerate(self.header)}
        problems = [*self.reader.problems, *self.header_problems]
        for finding in findings:
            place = located.get(finding.row) or self.reader.place(finding.row)
            index = column_index.get(finding.column, 0)
            message = self._message(finding, place.cell(index), located)
            if finding.count > 1:
                message += f" (and {finding.count - 1} more)"
            problems.append(Problem(place.position(index), message, finding.severity))
        self.report.problems = problems

    def _message(self, finding: _Finding, cell: str, located: Mapping[int, Place]) -> str:
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
            first = located.get(finding.other_row) or self.reader.place(finding.other_row)
            return f"duplicate row for {excerpt(finding.detail)} (first on {first.where})"
        return (
            f"no value for {finding.detail}: that dataset is not sent "
            "(the backend refuses an empty dataset)"
        )


def read_datasets(
    spec: DatasetSpec, path: str, setup: SetupConfig, shown: str | None = None
) -> tuple[Iterator[Dataset], FileReport]:
    """The canonical datasets of one file with their values (for apply and comparison)."""
    reading = FileDatasets(spec, path, setup, shown)
    return reading.datasets(), reading.report


# The name of earlier versions, when CSV was the only format.
CsvDatasets = FileDatasets

__all__ = [
    "CsvDatasets",
    "FileDatasets",
    "FileReport",
    "read_datasets",
    "summarize_file",
    "to_nanos",
]
