"""Positions of values in a JSON text (loader/jsonpos.py): the line and column of each
value by its path, the nearest recorded ancestor for a path not in the text or deeper
than `max_depth`, broken JSON, and the nesting bound checked before parsing."""

from __future__ import annotations

import pytest

from loader.jsonpos import JsonPositions, nesting_problem
from loader.model import Position, Problem

TEXT = '{\n  "a": 1,\n  "b": [10, {"c": "x"}],\n  "s": "x,]}:[",\n  "d": null\n}\n'


def at(line: int, column: int) -> Position:
    return Position("c.json", line, column)


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ((), at(1, 1)),
        (("a",), at(2, 8)),
        (("b",), at(3, 8)),
        (("b", 0), at(3, 9)),
        (("b", 1), at(3, 13)),
        (("b", 1, "c"), at(3, 19)),
        (("s",), at(4, 8)),
        (("d",), at(5, 8)),  # the string before it held `,]}:[`: not structure
    ],
)
def test_each_value_is_at_its_line_and_column(path: tuple[str | int, ...], where: Position) -> None:
    assert JsonPositions("c.json", TEXT).position(path) == where


def test_a_path_not_in_the_text_falls_back_to_its_nearest_ancestor() -> None:
    positions = JsonPositions("c.json", TEXT)
    assert positions.position(("b", 7)) == at(3, 8)
    assert positions.position(("b", 1, "missing", 0)) == at(3, 13)
    assert positions.position(("missing",)) == at(1, 1)


def test_paths_deeper_than_max_depth_stop_at_that_depth() -> None:
    shallow = JsonPositions("c.json", TEXT, max_depth=1)
    assert shallow.position(("b", 1, "c")) == at(3, 8)
    assert shallow.position(("b",)) == at(3, 8)
    assert JsonPositions("c.json", TEXT, max_depth=0).position(("a",)) == at(1, 1)


def test_broken_json_still_positions_what_came_before_the_break() -> None:
    positions = JsonPositions("c.json", '{"a": [1,\n  2, {"b": ')
    assert positions.position(("a", 1)) == at(2, 3)
    assert positions.position(("a", 2)) == at(2, 6)
    assert positions.position(("a", 2, "b")) == at(2, 6)  # its value never came


def test_the_nesting_problem_points_at_the_bracket_that_crosses_the_limit() -> None:
    text = "[\n [\n  [1]]]"
    problem = JsonPositions("c.json", text).nesting_problem(limit=2)
    assert problem == Problem(at(3, 3), "nested deeper than 2 levels")
    assert str(problem) == "c.json:3:3: nested deeper than 2 levels"
    assert nesting_problem("c.json", text, limit=3) is None


def test_objects_count_as_levels_and_brackets_in_strings_do_not() -> None:
    problem = nesting_problem("c.json", '{"a": {"b": [1]}}', limit=2)
    assert problem == Problem(at(1, 13), "nested deeper than 2 levels")
    strings = '["[[[[", "a\\"[[[", {"k": "{{{"}]'  # an escaped quote does not end a string
    assert nesting_problem("c.json", strings, limit=2) is None
    assert nesting_problem("c.json", '["[[[[[', limit=1) is None  # a string left open
