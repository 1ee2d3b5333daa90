"""YAML text -> plain Python values with the exact position of every key and value.

The manifest's first step. Scalars are typed as YAML 1.2's core schema types them, so
`2020-02-01` and `no` stay text and only true/false, null, integers and floats are typed.
`${VAR}` and `${VAR:-default}` are substituted per scalar *after* parsing: positions stay
those of the file, and a variable's value cannot inject YAML structure (a plain scalar is
typed again after substitution, so `${PORT:-8080}` is an integer; a quoted one stays text).
`$$` stands for a literal `$`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from loader.model import Position

JsonPath = tuple[str | int, ...]

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")
_STR = "tag:yaml.org,2002:str"


class _Core12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema resolution instead of YAML 1.1's."""


_Core12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
    ("tag:yaml.org,2002:merge", re.compile(r"^<<$"), "<"),
):
    _Core12Loader.add_implicit_resolver(_tag, _pattern, list(_first))


@dataclass(frozen=True)
class Variable:
    """A `${NAME}` reference found in a scalar."""

    name: str
    path: JsonPath
    position: Position
    defined: bool


@dataclass
class YamlDocument:
    """A parsed document: its value, where each value and key sits, and its variables."""

    path: str
    value: Any
    value_positions: dict[JsonPath, Position] = field(default_factory=dict)
    key_positions: dict[JsonPath, Position] = field(default_factory=dict)
    raw_scalars: dict[JsonPath, str] = field(default_factory=dict)  # before substitution
    variables: list[Variable] = field(default_factory=list)
    duplicate_keys: list[tuple[JsonPath, Position]] = field(default_factory=list)

    def position(self, path: JsonPath) -> Position:
        """The position of the value at `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.value_positions.get(path[:end])
            if found is not None:
                return found
        return Position(self.path, 1, 1)

    def key_position(self, path: JsonPath) -> Position:
        """The position of the key naming `path` (falls back to the value's)."""
        return self.key_positions.get(path) or self.position(path)

    def unresolved(self, path: JsonPath) -> list[Variable]:
        """Undefined variables at `path` or below it."""
        size = len(path)
        return [v for v in self.variables if not v.defined and v.path[:size] == path]


class YamlSyntaxError(Exception):
    def __init__(self, position: Position, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


def substitute(text: str, environ: Mapping[str, str]) -> tuple[str, list[tuple[str, bool]]]:
    """Replace `${VAR}`, `${VAR:-default}` and `$$`; return the text and (name, defined) pairs.

    An undefined variable without a default is left as written.
    """
    found: list[tuple[str, bool]] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name is None:
            return "$"
        value = environ.get(name)
        if default is not None and not value:
            found.append((name, True))
            return default
        found.append((name, value is not None))
        return match.group(0) if value is None else value

    return _VARIABLE.sub(replace, text), found


def typed_scalar(text: str) -> Any:
    """Type a plain scalar the way YAML 1.2's core schema does."""
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT.match(text):
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text)
    if _FLOAT.match(text):
        lowered = text.lower()
        if lowered.endswith("nan"):
            return math.nan
        if lowered.endswith("inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        return float(text)
    return text


def load_yaml(text: str, path: str, environ: Mapping[str, str] | None = None) -> YamlDocument:
    """Parse one YAML document; raise YamlSyntaxError with the position of a syntax error."""
    env = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=_Core12Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Position(path, mark.line + 1, mark.column + 1) if mark else Position(path)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise YamlSyntaxError(where, message or "invalid YAML") from None
    except yaml.YAMLError as error:  # e.g. a document stream with several documents
        raise YamlSyntaxError(Position(path, 1, 1), str(error).splitlines()[0]) from None
    document = YamlDocument(path=path, value=None)
    if node is not None:
        document.value = _Builder(document, env).build(node, ())
    return document


class _Builder:
    def __init__(self, document: YamlDocument, environ: Mapping[str, str]) -> None:
        self.document = document
        self.environ = environ

    def at(self, node: yaml.Node) -> Position:
        mark = node.start_mark
        return Position(self.document.path, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.document.value_positions.setdefault(path, self.at(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in self.flattened(node):
            key = self.key_text(key_node)
            child = (*path, key)
            if key in result:
                self.document.duplicate_keys.append((child, self.at(key_node)))
            self.document.key_positions[child] = self.at(key_node)
            self.document.value_positions.pop(child, None)
            result[key] = self.build(value_node, child)
        return result

    def flattened(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """Key/value pairs with YAML merge keys (`<<: *anchor`) expanded; own keys win."""
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                own.append((key_node, value_node))
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    merged.extend(self.flattened(source))
        own_keys = {self.key_text(k) for k, _ in own}
        return [(k, v) for k, v in merged if self.key_text(k) not in own_keys] + own

    @staticmethod
    def key_text(node: yaml.Node) -> str:
        # Keys are names: `1:` or `true:` are the texts "1" and "true".
        return str(node.value) if isinstance(node, yaml.ScalarNode) else repr(node.value)

    def scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        text: str = node.value
        plain = node.style is None
        if "$" in text:
            self.document.raw_scalars[path] = text
            text, names = substitute(text, self.environ)
            position = self.at(node)
            self.document.variables.extend(
                Variable(name, path, position, defined) for name, defined in names
            )
            return typed_scalar(text) if plain else text
        if node.tag == _STR or not plain:
            return text
        return typed_scalar(text)
