"""Tables in data files, read in chunks of rows that know their place: CSV (plain or
compressed) and Parquet. What the rows mean is loader/data.py's; here is only how a file
gives its header, its rows and, for a problem, where a row is and what a cell held.

Rows are numbered from 0 in the order the file holds them (pandas' index of a chunk). A
CSV row is located by the physical line and column of the decompressed text; a Parquet
row by its number (from 1). Key columns (date and units) come as pandas categoricals of
text: both readers give the canonicaliser the same shapes, so that the same data in any
format gives the same datasets.

pandas is imported with this module; pyarrow only when a Parquet file is read (the
`parquet` extra).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from loader.csvshape import field_starts, locate_rows, open_text, scan_shape
from loader.fileformats import READ_ERRORS, FileFormat, open_bytes
from loader.model import Position, Problem, Severity, excerpt

if TYPE_CHECKING:
    import pyarrow as pa

# Rows per chunk: large enough for pandas to be fast, small enough that a chunk's parsed
# frames weigh little beside one date's datasets (bench/prepare.py --large measures it).
CHUNK_ROWS = 250_000
SINGLE_PASS_BYTES = 16 * 2**20  # files above this are read in two passes
# A compressed CSV is read twice above this many compressed bytes: text compresses several
# times, and what matters is how much a chunk of rows weighs once read.
SINGLE_PASS_COMPRESSED_BYTES = SINGLE_PASS_BYTES // 4


@dataclass(frozen=True)
class Place:
    """Where one row of a file is, and the text of its cells (by header index)."""

    positions: Sequence[Position]  # per column; one entry when the row has no columns
    cells: Sequence[str]
    where: str  # "line 12", "row 12": how a message names the row

    def position(self, index: int) -> Position:
        return self.positions[index] if index < len(self.positions) else self.positions[0]

    def cell(self, index: int) -> str:
        return self.cells[index] if index < len(self.cells) else ""


@dataclass
class Chunk:
    """Consecutive rows: key columns as categoricals of text, value columns as numbers or
    text, the index their row numbers; `exact` holds, for value columns whose values a
    float cannot carry exactly (Parquet decimals), each row's canonical nanos; `nulls`,
    for the value columns of a typed file, where a cell holds nothing."""

    frame: pd.DataFrame
    exact: dict[str, np.ndarray[Any, np.dtype[np.int64]]] = field(default_factory=dict)
    nulls: dict[str, np.ndarray[Any, np.dtype[np.bool_]]] = field(default_factory=dict)


class TableReader(Protocol):
    """One data file, as the canonicaliser reads it."""

    path: str
    shown: str  # how problems name it
    problems: list[Problem]  # of the file as a whole: unreadable, wrong shape or types
    failed: bool  # nothing of it can be read

    def header(self) -> list[str] | None:
        """The column names; None (with a problem) when there are none to read."""

    def header_position(self, index: int) -> Position: ...

    def check(self, date_column: str, units: Sequence[str], values: Sequence[str]) -> bool:
        """Whether the rows can be read as such: a CSV's records all have the header's
        field count, a Parquet file's columns have types of the roles given."""

    def typed_dates(self, column: str) -> bool:
        """Whether the column holds dates as dates (their text is ISO: no date_format)."""

    def is_large(self) -> bool:
        """Large enough to read in two passes (dates first)."""

    def chunks(
        self, keys: Sequence[str], values: Sequence[str], values_as_text: bool = False
    ) -> Iterator[Chunk]:
        """The rows, those columns only: `keys` as categoricals of text, `values` as
        numbers or text (kept as written with `values_as_text`)."""

    def locate(self, rows: set[int]) -> dict[int, Place]:
        """The place of each row asked for (run only when there is a problem to show)."""

    def place(self, row: int) -> Place:
        """Where a row is when it could not be located (its number alone)."""


def reader_for(path: str, shown: str, file_format: FileFormat) -> TableReader:
    if file_format.kind == "parquet":
        return ParquetReader(path, shown)
    return CsvReader(path, shown, file_format.compression)


# ---------------------------------------------------------------------------------------
# CSV


class CsvReader:
    def __init__(self, path: str, shown: str, compression: str | None = None) -> None:
        self.path = path
        self.shown = shown
        self.compression = compression
        self.problems: list[Problem] = []
        self.failed = False
        self._starts: list[int] = []

    def at(self, line: int, column: int = 0) -> Position:
        return Position(self.shown, line, column)

    def _fail(self, message: str) -> None:
        self.problems.append(Problem(self.at(1, 1), message))
        self.failed = True

    def header(self) -> list[str] | None:
        try:
            with open_text(self.path, self.compression) as handle:
                first_line = handle.readline()
        except READ_ERRORS as error:
            self._fail(f"cannot read file: {error}")
            return None
        header = next(csv.reader([first_line]), [])
        if not any(h.strip() for h in header):
            self._fail("empty file: no header line")
            return None
        self._starts = field_starts(first_line.rstrip("\r\n"))
        return header

    def header_position(self, index: int) -> Position:
        return self.at(1, self._starts[index] + 1 if index < len(self._starts) else 1)

    def check(self, date_column: str, units: Sequence[str], values: Sequence[str]) -> bool:
        """Every record has the header's number of fields; a file with no data row at
        all is worth a warning (it loads nothing)."""
        try:
            shape = scan_shape(self.path, self.compression)
        except READ_ERRORS as error:
            self._fail(f"cannot read file: {error}")
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
            self.problems.append(Problem(self.at(ragged.line), message))
        if shape.unterminated_line is not None:
            self.problems.append(
                Problem(
                    self.at(shape.unterminated_line),
                    "a quoted field opens here and is never closed",
                )
            )
        if not shape.records and not shape.ragged_count and shape.unterminated_line is None:
            self.problems.append(
                Problem(
                    Position(self.shown),
                    "no data rows: the file has only its header, so it loads nothing",
                    Severity.WARNING,
                )
            )
        return not shape.ragged_count and shape.unterminated_line is None

    def typed_dates(self, column: str) -> bool:
        return False

    def is_large(self) -> bool:
        limit = SINGLE_PASS_BYTES if self.compression is None else SINGLE_PASS_COMPRESSED_BYTES
        try:
            return os.path.getsize(self.path) > limit
        except OSError:
            return False

    def chunks(
        self, keys: Sequence[str], values: Sequence[str], values_as_text: bool = False
    ) -> Iterator[Chunk]:
        """The file's chunks; a file pandas cannot parse becomes one problem."""
        dtypes: dict[str, Any] = dict.fromkeys(keys, "category")
        if values_as_text:
            dtypes.update(dict.fromkeys(values, object))
        source: Any = self.path
        try:
            if self.compression is not None:
                # Decompressed by the same code as every other reading of the file.
                source = open_bytes(self.path, self.compression)
            reader = pd.read_csv(
                source,
                encoding="utf-8-sig",
                usecols=[*keys, *values],
                dtype=dtypes,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                chunksize=CHUNK_ROWS,
                engine="c",
            )
            with reader:
                for frame in reader:
                    yield Chunk(frame)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
                ValueError) as error:  # fmt: skip
            text_of = str(error).strip()
            message = text_of.splitlines()[-1] if text_of else type(error).__name__
            self._fail(f"cannot parse CSV: {message}")
        except READ_ERRORS as error:
            self._fail(f"cannot read file: {error}")
        finally:
            if source is not self.path:
                source.close()

    def locate(self, rows: set[int]) -> dict[int, Place]:
        try:
            located = locate_rows(self.path, rows, self.compression)
        except READ_ERRORS:
            return {}
        return {row: self._place(*found) for row, found in located.items()}

    def _place(self, first_line: int, raw: str, fields: list[str]) -> Place:
        positions = []
        for offset in field_starts(raw) if raw else [0]:
            # A quoted field may have carried the record over several physical lines.
            line = first_line + raw.count("\n", 0, offset)
            column = offset - (raw.rfind("\n", 0, offset) + 1) + 1
            positions.append(self.at(line, column))
        return Place(positions, fields, f"line {first_line}")

    def place(self, row: int) -> Place:
        return Place([self.at(row + 2, 1)], [], f"line {row + 2}")


# ---------------------------------------------------------------------------------------
# Parquet


class ParquetReader:
    """A Parquet file through pyarrow, one batch of up to CHUNK_ROWS rows at a time.

    Accepted: units as text or dictionary-encoded text; dates as date, time-zone-free
    timestamp or text; values as integer, float, decimal (converted exactly) or text.
    A null is a missing cell; the manifest's `missing` spellings apply to text only.
    """

    def __init__(self, path: str, shown: str) -> None:
        self.path = path
        self.shown = shown
        self.problems: list[Problem] = []
        self.failed = False
        self._file: Any = None
        self._types: dict[str, pa.DataType] = {}

    def _fail(self, message: str) -> None:
        self.problems.append(Problem(Position(self.shown), message))
        self.failed = True

    def header(self) -> list[str] | None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            self._fail(
                "reading Parquet files needs pyarrow (pip install 'flowkit-loader[parquet]')"
            )
            return None
        import pyarrow as pa

        try:
            self._file = pq.ParquetFile(self.path)
            schema = self._file.schema_arrow
        except (OSError, pa.ArrowException) as error:
            self._fail(f"cannot read Parquet file: {error}")
            return None
        names = list(schema.names)
        if not names:
            self._fail("empty file: no columns")
            return None
        self._types = {f.name: f.type for f in schema}
        return names

    def header_position(self, index: int) -> Position:
        return Position(self.shown)

    def check(self, date_column: str, units: Sequence[str], values: Sequence[str]) -> bool:
        import pyarrow as pa

        ok = True
        for column in (date_column, *units, *values):
            if column not in self._types:
                continue  # a missing column, reported with the header
            kind = self._types[column]
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if column in units:
                accepted = _is_text(kind)
                wanted = "text (string or dictionary)"
            elif column == date_column:
                accepted = (
                    _is_text(kind)
                    or pa.types.is_date(kind)
                    or (pa.types.is_timestamp(kind) and kind.tz is None)
                )
                wanted = "dates, time-zone-free timestamps or text"
            else:
                accepted = (
                    pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_decimal(kind) or _is_text(kind)
                )  # fmt: skip
                wanted = "integers, floats, decimals or text"
            if not accepted:
                self.problems.append(
                    Problem(
                        Position(self.shown),
                        f"column '{excerpt(column)}' holds {kind}: it must hold {wanted}",
                    )
                )
                ok = False
        if ok and self._file.metadata.num_rows == 0:
            self.problems.append(
                Problem(
                    Position(self.shown),
                    "no data rows: the file has no rows, so it loads nothing",
                    Severity.WARNING,
                )
            )
        return ok

    def typed_dates(self, column: str) -> bool:
        kind = self._types.get(column)
        return kind is not None and not _is_text(kind)

    def is_large(self) -> bool:
        # Columns are read one by one: the date column alone is cheap to read first.
        return bool(self._file.metadata.num_rows > CHUNK_ROWS)

    def chunks(
        self, keys: Sequence[str], values: Sequence[str], values_as_text: bool = False
    ) -> Iterator[Chunk]:
        import pyarrow as pa

        offset = 0
        columns = [*keys, *values]
        try:
            for batch in self._file.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                index = pd.RangeIndex(offset, offset + batch.num_rows)
                offset += batch.num_rows
                frame: dict[str, Any] = {}
                exact, nulls = {}, {}
                for name in columns:
                    array = batch.column(name)
                    if name in values:
                        frame[name], nanos = _values(array)
                        nulls[name] = array.is_null().to_numpy(zero_copy_only=False)
                        if nanos is not None:
                            exact[name] = nanos
                    else:
                        frame[name] = _categorical(array)
                yield Chunk(pd.DataFrame(frame, index=index), exact, nulls)
        except (OSError, pa.ArrowException) as error:
            self._fail(f"cannot read Parquet file: {error}")

    def locate(self, rows: set[int]) -> dict[int, Place]:
        """Each row's cells as text, read again batch by batch."""
        import pyarrow as pa

        wanted = sorted(rows)
        names = list(self._types)
        found: dict[int, Place] = {}
        offset = 0
        try:
            for batch in self._file.iter_batches(batch_size=CHUNK_ROWS):
                inside = [r for r in wanted if offset <= r < offset + batch.num_rows]
                if inside:
                    taken = batch.take(pa.array([r - offset for r in inside]))
                    columns = [taken.column(n).to_pylist() for n in names]
                    for i, row in enumerate(inside):
                        cells = [_cell_text(column[i]) for column in columns]
                        found[row] = replace(self.place(row), cells=cells)
                offset += batch.num_rows
                if offset > wanted[-1]:
                    break
        except (OSError, pa.ArrowException):
            return found
        return found

    def place(self, row: int) -> Place:
        return Place([Position(self.shown, row=row + 1)], [], f"row {row + 1}")


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _categorical(array: Any) -> Any:
    """Text, dictionary-encoded text, dates or timestamps as a categorical of text; the
    distinct values are few (dates, unit codes), so only they are turned into text."""
    import pyarrow as pa

    if not pa.types.is_dictionary(array.type):
        array = array.dictionary_encode()
    elif len(array.dictionary) != len(array.dictionary.unique()):
        array = array.dictionary_decode().dictionary_encode()
    codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    categories = [_cell_text(v) for v in array.dictionary.to_pylist()]
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories))


def _values(
    array: Any,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.int64]] | None]:
    """A value column: numbers as floats (NaN where null) or text as objects (None where
    null); for decimals also each row's exact canonical nanos. Arrays, not Series: a
    Series would be aligned on its own index, not the chunk's row numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if _is_text(kind):
        return array.to_numpy(zero_copy_only=False).astype(object), None
    floats = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    if not pa.types.is_decimal(kind):
        return floats, None
    return floats, _decimal_nanos(array, floats)


def _decimal_nanos(array: Any, floats: np.ndarray[Any, Any]) -> Any:
    """Exact nanos of a decimal column: rounded to 9 decimals half away from zero (as
    DECIMAL(20,9) keeps them), then read as integers from Arrow's 128-bit words. A value
    too large for that is out of the backend's range anyway (its float says so)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if kind.scale > 9:
        array = pc.round(array, ndigits=9, round_mode="half_towards_infinity")
    in_range = np.abs(np.nan_to_num(floats)) < 2**62 / 10**9
    safe = pc.if_else(pa.array(in_range), array, pa.scalar(0, array.type)).fill_null(0)
    nines = safe.cast(pa.decimal128(38, 9))
    words = np.frombuffer(nines.buffers()[1], dtype="<i8", count=2 * len(nines),
                          offset=16 * nines.offset)  # fmt: skip
    return words[0::2].copy()


def _cell_text(value: Any) -> str:
    """A cell as a message shows it and as a date or unit code is read."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


__all__ = [
    "CHUNK_ROWS", "SINGLE_PASS_BYTES", "Chunk", "CsvReader", "ParquetReader", "Place",
    "TableReader", "reader_for",
]  # fmt: skip
