"""Positions of values inside a JSON text, for problems found in a config.json.

The config is parsed with the `json` module (fast: upstream's is 1.3 MB of TopoJSON);
only when a problem must be reported is the text scanned once more, here, to find the
line and column of each value down to a limited depth.

Before parsing, `nesting_problem` bounds the nesting (json.loads recurses in C and raises
RecursionError on a deep `[[[[...`; the schema check and the config builder recurse too).
"""

from __future__ import annotations

import re
from itertools import accumulate

from loader.model import Position, Problem
from loader.yamlsrc import MAX_NESTING, JsonPath

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')
# A string, closed or (in broken JSON) running to the end, so brackets in it are not counted.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_problem(path: str, text: str, limit: int = MAX_NESTING) -> Problem | None:
    """The position where `text` nests arrays/objects deeper than `limit`, as a problem.

    The check runs on every config, so it stays in C where it can: strings and all but
    the brackets are removed by regular expressions and the running depth is summed by
    `accumulate` (about as long as json.loads itself on the 1.3 MB upstream config). Only
    a document found too deep is walked in Python, to the bracket that crosses the limit.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= limit or max(accumulate(map(_STEP.__getitem__, brackets))) <= limit:
        return None
    depth = 0
    for match in _BRACKET_OR_STRING.finditer(text):
        token = match.group(0)
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                offset = match.start()
                line = text.count("\n", 0, offset) + 1
                column = offset - (text.rfind("\n", 0, offset) + 1) + 1
                return Problem(Position(path, line, column), f"nested deeper than {limit} levels")
        elif token in ("]", "}"):
            depth -= 1
    return None  # not reached: the walk counts exactly what the sum counted


class JsonPositions:
    """Lazily maps JSON paths (up to `max_depth` deep) to positions in the text."""

    def __init__(self, path: str, text: str, max_depth: int = 4) -> None:
        self.path = path
        self.text = text
        self.max_depth = max_depth
        self._positions: dict[JsonPath, Position] | None = None

    def nesting_problem(self, limit: int = MAX_NESTING) -> Problem | None:
        """The text nested deeper than `limit`, as a positioned problem (see the function)."""
        return nesting_problem(self.path, self.text, limit)

    def position(self, path: JsonPath) -> Position:
        positions = self._index()
        for end in range(min(len(path), self.max_depth), -1, -1):
            found = positions.get(path[:end])
            if found is not None:
                return found
        return Position(self.path, 1, 1)

    def _index(self) -> dict[JsonPath, Position]:
        if self._positions is None:
            self._positions = self._scan()
        return self._positions

    def _scan(self) -> dict[JsonPath, Position]:
        line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        positions: dict[JsonPath, Position] = {}
        # Each open container: [path, next list index or None for objects]. The path is
        # None for a container deeper than max_depth (or with no key, in broken JSON): its
        # values are not recorded and paths stop growing, so a deep `[[[[...` stays linear
        # instead of building, at every level, a tuple as long as the depth.
        stack: list[list[object]] = []
        expecting_key = False
        pending_key: str | None = None
        line = 0

        def where(offset: int) -> Position:
            nonlocal line
            while line + 1 < len(line_starts) and line_starts[line + 1] <= offset:
                line += 1
            return Position(self.path, line + 1, offset - line_starts[line] + 1)

        def value_path() -> JsonPath | None:
            if not stack:
                return ()
            parent = stack[-1]
            base = parent[0]
            if not isinstance(base, tuple) or len(base) >= self.max_depth:
                return None
            if parent[1] is None:
                return (*base, pending_key) if pending_key is not None else None
            index = parent[1]
            assert isinstance(index, int)
            return (*base, index)

        def record(offset: int) -> JsonPath | None:
            here = value_path()
            if here is not None:
                positions.setdefault(here, where(offset))
            return here

        for match in _TOKEN.finditer(self.text):
            token = match.group(0)
            if token in "{[":
                here = record(match.start())
                stack.append([here, None if token == "{" else 0])
                expecting_key = token == "{"
                pending_key = None
            elif token in "}]":
                if stack:
                    stack.pop()
                expecting_key = False
            elif token == ",":
                if stack and stack[-1][1] is not None:
                    index = stack[-1][1]
                    assert isinstance(index, int)
                    stack[-1][1] = index + 1
                else:
                    expecting_key = True
            elif token == ":":
                expecting_key = False
            elif expecting_key and token.startswith('"'):
                pending_key = token[1:-1]
            else:
                record(match.start())
        return positions
