"""YAML text -> plain Python values with the exact position of every key and value.

The manifest's first step. Scalars are typed as YAML 1.2's core schema types them, so
`2020-02-01` and `no` stay text and only true/false, null, integers and floats are typed.
`${VAR}` and `${VAR:-default}` are substituted per scalar *after* parsing: positions stay
those of the file, and a variable's value cannot inject YAML structure (a plain scalar is
typed again after substitution, so `${PORT:-8080}` is an integer; a quoted one stays text).
`$$` stands for a literal `$`.

Hostile input is bounded, never a traceback or an exhausted memory: collections nest at
most MAX_NESTING levels (checked while composing, long before Python's recursion limit,
and again while building, since aliases can nest a value inside another), an alias may
not refer to a value that contains it, and aliases (merge keys included) may expand to at
most MAX_ALIAS_VALUES values in all (a "billion laughs" document is refused at the alias
that crosses the budget instead of being built).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError

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
_MERGE = "tag:yaml.org,2002:merge"

# Manifests nest 6 levels or so and the upstream setup config (TopoJSON included) 11; 64
# is far above any real document and keeps every recursive reader downstream (this
# module's builder, JSON Schema validation, json.loads) far below Python's recursion limit.
MAX_NESTING = 64
# Anchors share defaults (`<<: *defaults`): a few keys reused by tens or hundreds of
# entries, i.e. thousands of values. A document's own values cost memory in proportion to
# its text; only aliases multiply, so only the values built through aliases are counted.
# 100,000 is tens of times what a real manifest needs and, built, takes a few tens of MB.
MAX_ALIAS_VALUES = 100_000


class _AliasNode(yaml.Node):
    """An alias as written (`*name`): the anchored node and where the alias itself is.

    PyYAML's composer returns the anchored node itself, which loses the alias's position
    and makes a recursive alias an endless loop for whoever walks the nodes.
    """

    id = "alias"

    def __init__(self, anchor: str, target: yaml.Node, event: Any) -> None:
        super().__init__(target.tag, target, event.start_mark, event.end_mark)
        self.anchor = anchor
        self.target = target


def _target(node: yaml.Node) -> yaml.Node:
    """The node an alias stands for (anchors name nodes, never aliases); else the node."""
    return node.target if isinstance(node, _AliasNode) else node


class _Core12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema resolution instead of YAML 1.1's,
    composing aliases as _AliasNode and refusing collections nested too deep."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nesting = 0  # collections open around the node being composed

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event: Any = self.get_event()  # type: ignore[no-untyped-call]  # stubs: untyped
            target = self.anchors.get(event.anchor)
            if target is None:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return _AliasNode(event.anchor, target, event)
        if not self.check_event(yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        # The composer recurses once per level (two or three Python frames): refuse here,
        # at the collection that crosses the bound, before the recursion limit is near.
        if self.nesting >= MAX_NESTING:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, f"nested deeper than {MAX_NESTING} levels", mark)
        self.nesting += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1


_Core12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
    (_MERGE, re.compile(r"^<<$"), "<"),
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


# Merged pairs: key node, value node, and the alias they were merged through (None for an
# inline mapping merged as `<<: {...}`, whose values are the document's own).
_Pair = tuple[yaml.Node, yaml.Node, _AliasNode | None]


class _Builder:
    def __init__(self, document: YamlDocument, environ: Mapping[str, str]) -> None:
        self.document = document
        self.environ = environ
        self.expanding: list[_AliasNode] = []  # aliases being built, outermost first
        self.alias_values = 0  # values (and merged pairs) built through aliases so far
        self.open: set[int] = set()  # ids of the collection nodes being built

    def at(self, node: yaml.Node) -> Position:
        mark = node.start_mark
        return Position(self.document.path, mark.line + 1, mark.column + 1)

    def refuse(self, node: yaml.Node, message: str) -> YamlSyntaxError:
        return YamlSyntaxError(self.at(node), message)

    def count_alias_value(self, alias: _AliasNode) -> None:
        """Charge one value to the alias budget; refuse at the outermost alias expanding."""
        self.alias_values += 1
        if self.alias_values > MAX_ALIAS_VALUES:
            culprit = self.expanding[0] if self.expanding else alias
            raise self.refuse(
                culprit,
                f"alias *{culprit.anchor}: the document's aliases expand to more than "
                f"{MAX_ALIAS_VALUES:,} values",
            )

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        if isinstance(node, _AliasNode):
            return self.alias(node, path)
        if self.expanding:
            self.count_alias_value(self.expanding[0])
        self.document.value_positions.setdefault(path, self.at(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        # The composer bounded the text's nesting; aliases can nest one anchored value in
        # another, so the built value is bounded again (this builder recurses too).
        if len(path) >= MAX_NESTING:
            if self.expanding:
                alias = self.expanding[0]
                message = f"nested deeper than {MAX_NESTING} levels through alias *{alias.anchor}"
                raise self.refuse(alias, message)
            raise self.refuse(node, f"nested deeper than {MAX_NESTING} levels")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            assert isinstance(node, yaml.SequenceNode)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def alias(self, node: _AliasNode, path: JsonPath) -> Any:
        if id(node.target) in self.open:
            raise self.recursive(node)
        self.expanding.append(node)
        try:
            return self.build(node.target, path)
        finally:
            self.expanding.pop()

    def recursive(self, node: _AliasNode) -> YamlSyntaxError:
        return self.refuse(
            node,
            f"recursive alias *{node.anchor}: expanding it never ends",
        )

    def mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node, via in self.flattened(node, []):
            key = self.key_text(key_node)
            child = (*path, key)
            if key in result:
                self.document.duplicate_keys.append((child, self.at(key_node)))
            self.document.key_positions[child] = self.at(key_node)
            self.document.value_positions.pop(child, None)
            if via is None:
                result[key] = self.build(value_node, child)
                continue
            self.expanding.append(via)  # a merged value is built through its alias
            try:
                result[key] = self.build(value_node, child)
            finally:
                self.expanding.pop()
        return result

    def flattened(self, node: yaml.MappingNode, merging: list[int]) -> list[_Pair]:
        """Key/value pairs with YAML merge keys (`<<: *anchor`) expanded; own keys win.

        `merging` holds the ids of the mappings whose merges are being expanded, around
        this one: a merge chain is bounded like nesting and may not loop back.
        """
        merged: list[_Pair] = []
        own: list[_Pair] = []
        for key_node, value_node in node.value:
            if _target(key_node).tag != _MERGE:
                own.append((key_node, value_node, None))
                continue
            merge = _target(value_node)
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [value_node]
            for source in sources:
                mapping = _target(source)
                if not isinstance(mapping, yaml.MappingNode):
                    continue
                # The alias a merged value is charged to: the merge's own (`<<: *list`),
                # else the source's (`<<: [*a, *b]`); an inline `<<: {...}` has none.
                via = next((n for n in (value_node, source) if isinstance(n, _AliasNode)), None)
                if via is not None and (
                    id(mapping) in self.open or id(mapping) in merging or mapping is node
                ):
                    raise self.recursive(via)
                if len(merging) >= MAX_NESTING:
                    raise self.refuse(
                        via or source, f"merge keys chained deeper than {MAX_NESTING} levels"
                    )
                for pair in self.flattened(mapping, [*merging, id(node)]):
                    if via is not None:
                        self.count_alias_value(via)
                    merged.append((pair[0], pair[1], via or pair[2]))
        own_keys = {self.key_text(k) for k, _, _ in own}
        return [p for p in merged if self.key_text(p[0]) not in own_keys] + own

    @staticmethod
    def key_text(node: yaml.Node) -> str:
        # Keys are names: `1:` or `true:` are the texts "1" and "true".
        node = _target(node)
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
