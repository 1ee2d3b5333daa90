"""The physical shape of a CSV file (loader/csvshape.py): each record's field count
against the header's with the lines it spans, blank lines, the three line ends, quotes
(opening only at a field's start), a quote left open, and locating rows for messages."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from loader.csvshape import Ragged, Shape, field_starts, locate_rows, scan_shape, unlimited_fields


def shape_of(tmp_path: Path, text: str) -> Shape:
    path = tmp_path / "shape.csv"
    path.write_bytes(text.encode())
    return scan_shape(str(path))


def test_a_well_formed_file_has_its_header_count_and_no_ragged_record(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, 'a,b,c\n1,2,3\n"x,y",2,3\r\n')
    assert shape == Shape(header_fields=3, records=2)


def test_only_the_first_ragged_record_is_described_the_others_counted(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "a,b\n\n1,2\n1\n1,2,3\n")  # line 2 is blank: no record
    assert shape == Shape(2, records=3, ragged=[Ragged(line=4, fields=1, last_line=4)],
                          ragged_count=2)  # fmt: skip


def test_a_quoted_line_break_makes_one_record_over_two_lines(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, 'a,b\n"x\ny",2,3\n1,2\n')
    assert shape == Shape(2, records=2, ragged=[Ragged(line=2, fields=3, last_line=3)],
                          ragged_count=1)  # fmt: skip


def test_lone_cr_and_crlf_both_end_a_record(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, "a,b\r1,2\r\n3\r")
    assert shape == Shape(2, records=2, ragged=[Ragged(3, 1, 3)], ragged_count=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b\n1,2,3", Shape(2, records=1, ragged=[Ragged(2, 3, 2)], ragged_count=1)),
        ("a,b\n1,2,\n", Shape(2, records=1, ragged=[Ragged(2, 3, 2)], ragged_count=1)),
        ("a,b,c", Shape(3, records=0)),
        ("", Shape(0, records=0)),
    ],
    ids=["no final line break", "trailing comma", "header only", "empty file"],
)
def test_the_last_record_and_trailing_commas_count(
    tmp_path: Path, text: str, expected: Shape
) -> None:
    assert shape_of(tmp_path, text) == expected


def test_a_quote_left_open_names_the_line_where_it_opened(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, 'a,b\n1,2\n"open,3\n4,5\n')
    assert (shape.unterminated_line, shape.records, shape.ragged) == (3, 1, [])


def test_a_quote_inside_a_field_is_a_literal_character(tmp_path: Path) -> None:
    # `5"7` does not open a quoted field: the comma after it still separates.
    shape = shape_of(tmp_path, 'a,b\n5"7,2\n5"7,"2,x"\n1,2,3\n')
    assert shape == Shape(2, records=3, ragged=[Ragged(4, 3, 4)], ragged_count=1)


def test_an_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_shape(str(tmp_path / "missing.csv"))


def test_field_starts_are_offsets_that_skip_quoted_commas() -> None:
    assert field_starts('a,"b,c",d') == [0, 2, 8]
    assert field_starts(",,") == [0, 1, 2]
    assert field_starts("") == [0]


def test_locate_rows_gives_first_line_raw_text_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('a,b\n1,"x\ny"\n\n2,z\n3,w\n')
    # Row numbers count blank lines, as pandas does with skip_blank_lines=False.
    assert locate_rows(str(path), {0, 1, 2, 9}) == {
        0: (2, '1,"x\ny"\n', ["1", "x\ny"]),
        1: (4, "\n", []),
        2: (5, "2,z\n", ["2", "z"]),
    }
    assert locate_rows(str(tmp_path / "never-opened.csv"), set()) == {}


def test_unlimited_fields_lifts_the_limit_and_restores_it() -> None:
    before = csv.field_size_limit()
    long_field = "x" * (before + 1)
    with pytest.raises(RuntimeError), unlimited_fields():
        assert csv.field_size_limit() == sys.maxsize
        assert next(csv.reader([long_field])) == [long_field]
        raise RuntimeError
    assert csv.field_size_limit() == before
    with pytest.raises(csv.Error, match="field larger than field limit"):
        next(csv.reader([long_field]))


def test_a_quote_left_open_after_a_quote_inside_a_field_is_still_found(tmp_path: Path) -> None:
    """A quote inside a field sends the file to the csv module's reading, which takes an
    open quote to the end of the file without a word: the line it opens is still named."""
    path = tmp_path / "stray.csv"
    path.write_text('a,b\n5"7,2\n1,"open\n')
    # As the fast scan counts it: the open field's record is not a record of its own.
    assert scan_shape(str(path)) == Shape(header_fields=2, records=1, unterminated_line=3)
    closed = tmp_path / "closed.csv"
    closed.write_text('a,b\n5"7,2\n"x"y,2\n')  # text after a closing quote: not this
    assert scan_shape(str(closed)).unterminated_line is None
