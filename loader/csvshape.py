"""The physical shape of a CSV file: how many fields each record has, and where it starts.

pandas reads the values but does not say when a row's fields do not match the header: with
`usecols` the C parser drops the surplus fields of a long row without a word (an unquoted
thousands separator in `30,254` would store 30 and shift the rest), and a short row
becomes missing values. So every record's field count is checked here, on the bytes,
before pandas reads a value.

The scan is vectorised with numpy over blocks of the file. Quoting follows the C parser
(and the csv module): a quote opens a quoted field only at the start of a field; inside
one, a doubled quote is a quote and a single one closes it. The fast path tracks quote
parity, which is exactly that rule as long as every opening quote stands at the start of
a field; a file where one does not (a stray quote inside a field: `5"7`) is counted again
with the csv module, which follows the same rule byte by byte. Records end at an unquoted
\\n, \\r\\n or lone \\r; empty records (blank lines) are allowed. Only standard library and
numpy: nothing of pandas.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from loader.fileformats import open_bytes

BLOCK_BYTES = 4 * 2**20  # bytes scanned at once: a few times this is the scan's memory
MAX_REPORTED = 1  # records described one by one; the rest are counted
_BOM = b"\xef\xbb\xbf"
_QUOTE, _COMMA, _LF, _CR = (ord(c) for c in '",\n\r')


@dataclass
class Ragged:
    """A record whose field count differs from the header's."""

    line: int  # physical line where the record starts
    fields: int
    last_line: int  # physical line where it ends (a quoted field can span lines)


@dataclass
class Shape:
    """What the scan found: the header's field count and the records that differ."""

    header_fields: int = 0
    records: int = 0  # data records, blank lines not counted
    ragged: list[Ragged] = field(default_factory=list)  # the first MAX_REPORTED
    ragged_count: int = 0
    unterminated_line: int | None = None  # a quoted field still open at the end of the file

    def note(self, line: int, fields: int, last_line: int) -> None:
        self.ragged_count += 1
        if len(self.ragged) < MAX_REPORTED:
            self.ragged.append(Ragged(line, fields, last_line))


@contextlib.contextmanager
def unlimited_fields() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit for one read: a field that long is a
    problem to report at its line (usually a stray quote), not an exception."""
    previous = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def scan_shape(path: str, compression: str | None = None) -> Shape:
    """Every record's field count against the header's (raises OSError if unreadable, and
    what `open_bytes` raises for a damaged compressed file)."""
    shape = _fast_scan(path, compression)
    return shape if shape is not None else _exact_scan(path, compression)


def open_text(path: str, compression: str | None) -> TextIO:
    """The file's decompressed text as every reading of it sees it: UTF-8 with or without a
    BOM, undecodable bytes replaced (pandas reports them), newlines kept as written."""
    buffer: Any = open_bytes(path, compression)  # typeshed wants more than reading needs
    return io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="replace", newline="")


class _Scanner:
    """The fast path's state carried from one block to the next."""

    def __init__(self) -> None:
        self.shape = Shape()
        self.quoted = 0  # inside a quoted field at the start of the block
        self.previous = _LF  # the byte before the block (the file starts a record)
        self.line = 1  # physical line of the block's first byte
        self.record = 0  # index of the record the block starts in (0: the header)
        self.record_line = 1  # where that record started
        self.fields = 1  # that record's fields so far
        self.length = 0  # that record's bytes so far (its terminator not counted)
        self.quote_line = 0  # where the last quoted field opened

    def block(self, data: np.ndarray[Any, np.dtype[np.uint8]], following: int) -> bool:
        """Scan one block; `following` is the byte after it (-1 at the end of the file).
        False when a quote opens inside a field, which parity cannot follow.

        Work is on positions, not per-byte masks: a record's end is an unquoted line
        break, and a byte is quoted when an odd number of quotes precede it.
        """
        breaks = self._breaks(data, following)  # physical line ends, quoted ones too
        commas = np.flatnonzero(data == _COMMA)
        quotes = np.flatnonzero(data == _QUOTE)
        ends = breaks
        if quotes.size or self.quoted:
            before = np.arange(quotes.size) + self.quoted  # quotes in force before each
            opening = quotes[before % 2 == 0]
            if opening.size:
                prior = data[np.maximum(opening - 1, 0)]
                prior[opening == 0] = self.previous
                if not np.isin(prior, (_COMMA, _LF, _CR, _QUOTE)).all():
                    return False
                self.quote_line = self.line + int(np.searchsorted(breaks, opening[-1]))
            ends = breaks[(np.searchsorted(quotes, breaks) + self.quoted) % 2 == 0]
            commas = commas[(np.searchsorted(quotes, commas) + self.quoted) % 2 == 0]
            self.quoted = int((self.quoted + quotes.size) % 2)
        if ends.size:
            # Commas before each end, so the commas of each record that ends here.
            upto = np.searchsorted(commas, ends)
            fields = np.diff(upto, prepend=0) + 1
            fields[0] += self.fields - 1
            starts = np.empty(ends.size, dtype=np.int64)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            lengths = ends - starts
            lengths[0] += self.length
            # \r\n ends a record: its \r is not content (nor is a lone \r's own byte).
            crlf = data[ends] == _LF
            ahead = ends - 1
            prior_bytes = data[np.maximum(ahead, 0)]
            prior_bytes[ahead < 0] = self.previous
            lengths -= crlf & (prior_bytes == _CR)
            self._finish(fields, lengths, ends, breaks)
            self.fields = int(commas.size - upto[-1]) + 1
            self.length = data.size - int(ends[-1]) - 1
        else:
            self.fields += int(commas.size)
            self.length += data.size
        self.line += int(breaks.size)
        self.previous = int(data[-1])
        return True

    @staticmethod
    def _breaks(data: np.ndarray[Any, np.dtype[np.uint8]], following: int) -> np.ndarray[Any, Any]:
        """Positions of \\n and of a \\r not followed by \\n, in order."""
        feeds = np.flatnonzero(data == _LF)
        returns = np.flatnonzero(data == _CR)
        if not returns.size:
            return feeds
        nxt = data[np.minimum(returns + 1, data.size - 1)]
        last = returns == data.size - 1
        lone = np.where(last, following != _LF, nxt != _LF)
        return np.union1d(feeds, returns[lone])

    def _finish(
        self,
        fields: np.ndarray[Any, Any],
        lengths: np.ndarray[Any, Any],
        ends: np.ndarray[Any, Any],
        breaks: np.ndarray[Any, Any],
    ) -> None:
        """Account for the records that end in this block."""
        shape = self.shape
        first = self.record
        if first == 0:
            shape.header_fields = int(fields[0])
        counted = (fields > 1) | (lengths > 0)  # blank lines are not records
        if first == 0:
            counted[0] = False
        shape.records += int(np.count_nonzero(counted))
        wrong = np.flatnonzero(counted & (fields != shape.header_fields))
        for index in wrong[:MAX_REPORTED]:
            # Lines only for the records described: each is a count of breaks before it.
            start_line = self.record_line
            if index > 0:
                start_line = self.line + int(np.searchsorted(breaks, ends[index - 1])) + 1
            last_line = self.line + int(np.searchsorted(breaks, ends[index]))
            shape.note(start_line, int(fields[index]), last_line)
        shape.ragged_count += int(wrong.size) - min(int(wrong.size), MAX_REPORTED)
        self.record = first + fields.size
        self.record_line = self.line + int(np.searchsorted(breaks, ends[-1])) + 1

    def end(self) -> Shape:
        """The last record, when the file does not end with a line break."""
        if self.quoted:
            self.shape.unterminated_line = self.quote_line
        elif self.length or self.fields > 1:
            if self.record == 0:
                self.shape.header_fields = self.fields
            else:
                self.shape.records += 1
                if self.fields != self.shape.header_fields:
                    self.shape.note(self.record_line, self.fields, self.line)
        return self.shape


def _fast_scan(path: str, compression: str | None = None) -> Shape | None:
    scanner = _Scanner()
    with open_bytes(path, compression) as handle:
        first = handle.read(len(_BOM))  # read past, not sought: a stream cannot seek
        pending = (b"" if first == _BOM else first) + handle.read(BLOCK_BYTES)
        while pending:
            more = handle.read(BLOCK_BYTES)
            data = np.frombuffer(pending, dtype=np.uint8)
            if not scanner.block(data, more[0] if more else -1):
                return None
            pending = more
    return scanner.end()


def _exact_scan(path: str, compression: str | None = None) -> Shape:
    """The csv module's reading, record by record (files with a quote inside a field).
    Strict first: it accepts a quote inside an unquoted field and, unlike the lenient
    reader (which takes a quote left open to the end of the file without a word), names
    the line where a quote opens that nothing closes. Text after a closing quote, which
    pandas reads, stops only the strict reader: such a file is read again leniently."""
    shape, refused = _read_records(path, compression, strict=True)
    return _read_records(path, compression, strict=False)[0] if refused else shape


def _read_records(path: str, compression: str | None, *, strict: bool) -> tuple[Shape, bool]:
    """The shape as one csv reader finds it, and whether the strict one refused the file
    for anything but a quote left open at its end (the shape is then partial)."""
    shape = Shape()
    with unlimited_fields(), open_text(path, compression) as handle:
        reader = csv.reader(handle, strict=strict)
        start = 1
        try:
            for index, fields in enumerate(reader):
                if index == 0:
                    shape.header_fields = len(fields)
                elif fields:  # [] is a blank line
                    shape.records += 1
                    if len(fields) != shape.header_fields:
                        shape.note(start, len(fields), reader.line_num)
                start = reader.line_num + 1
        except csv.Error as error:
            # The csv module tells its errors apart by their text alone.
            if strict and str(error) != "unexpected end of data":
                return shape, True
            shape.unterminated_line = start  # the open field's record is not counted
    return shape, False


def field_starts(line: str) -> list[int]:
    """0-based offsets of each field in one physical CSV line (quote-aware)."""
    starts = [0]
    quoted = False
    for offset, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            starts.append(offset + 1)
    return starts


def locate_rows(
    path: str, rows: set[int], compression: str | None = None
) -> dict[int, tuple[int, str, list[str]]]:
    """First physical line, raw text (all its lines) and fields of each data row asked for.

    One pass with the csv module, which counts physical lines as pandas counts records
    (blank lines and quoted line breaks included); it runs only when there is something
    to report.
    """
    found: dict[int, tuple[int, str, list[str]]] = {}
    if not rows:
        return found
    last = max(rows)
    with unlimited_fields(), open_text(path, compression) as handle:
        raw_lines: list[str] = []

        def lines() -> Iterator[str]:
            for raw in handle:
                raw_lines.append(raw)
                yield raw

        reader = csv.reader(lines())
        previous_line = 0
        for record_index, fields in enumerate(reader):
            row = record_index - 1
            if row in rows:
                found[row] = (previous_line + 1, "".join(raw_lines), fields)
            previous_line = reader.line_num
            raw_lines.clear()
            if row >= last:
                break
    return found


__all__ = [
    "Ragged", "Shape", "field_starts", "locate_rows", "open_text", "scan_shape", "unlimited_fields",
]  # fmt: skip
