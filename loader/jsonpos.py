"""Positions of values inside a JSON text, for problems found in a config.json.

The config is parsed with the `json` module (fast: upstream's is 1.3 MB of TopoJSON);
only when a problem must be reported is the text scanned once more, here, to find the
line and column of each value down to a limited depth.
"""

from __future__ import annotations

import re

from loader.model import Position
from loader.yamlsrc import JsonPath

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


class JsonPositions:
    """Lazily maps JSON paths (up to `max_depth` deep) to positions in the text."""

    def __init__(self, path: str, text: str, max_depth: int = 4) -> None:
        self.path = path
        self.text = text
        self.max_depth = max_depth
        self._positions: dict[JsonPath, Position] | None = None

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
        # Each open container: [path, next list index or None for objects, pending key]
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
            assert isinstance(base, tuple)
            if parent[1] is None:
                return (*base, pending_key) if pending_key is not None else None
            index = parent[1]
            assert isinstance(index, int)
            return (*base, index)

        def record(offset: int) -> JsonPath | None:
            here = value_path()
            if here is not None and len(here) <= self.max_depth:
                positions.setdefault(here, where(offset))
            return here

        for match in _TOKEN.finditer(self.text):
            token = match.group(0)
            if token in "{[":
                here = record(match.start())
                stack.append([here if here is not None else (), None if token == "{" else 0])
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
