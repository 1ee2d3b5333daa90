"""Reading the recorded bodies and comparing them with what a replay answered.

A recorded body is the response text, sometimes cut: `...(+N chars)` at the end (N
characters left out) or ` …` (cut, length unknown). The heartbeat's is a sketch whose
values are `...`. `parse_recorded` reads what is there: a container whose text was cut
comes back as `CutDict` / `CutList` holding its complete items (an incomplete last item is
dropped), `...` as `ANY` / `ANY_OBJECT`.

`differences` compares a recorded value with an answered one: objects must have the same
keys (a cut object: its recorded keys are the answer's first keys, in order), lists are
compared element by element where both have elements (the answer's further elements must
have a recorded element's shape; a cut list's elements must all be there), scalars by type
(int, float, str, bool, null) or, where the value matters (`exact`), by value and type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any


class CutDict(dict[str, Any]):
    """An object whose recorded text was cut: these are its first keys."""


class CutList(list[Any]):
    """A list whose recorded text was cut: these are its first elements."""


class _Placeholder:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ANY = _Placeholder("ANY")  # `...` where a value was sketched
ANY_OBJECT = _Placeholder("ANY_OBJECT")  # `{...}`: some object
_MISSING = _Placeholder("MISSING")  # an item the cut left incomplete

_CUT_COUNTED = re.compile(r"\.\.\.\(\+(\d+) chars\)$")
_CUT_UNCOUNTED = " …"
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class Recorded:
    """An observation's body as recorded: `kind` is json, text, empty or derived (a
    '(DB / derived)' row); `text` is what was recorded before the cut marker; `omitted`
    the number of characters the cut left out (None: complete, or not counted)."""

    kind: str
    value: Any
    text: str
    cut: bool
    omitted: int | None


def parse_recorded(observation: Mapping[str, Any]) -> Recorded:
    body = str(observation["body"])
    counted = _CUT_COUNTED.search(body)
    omitted = None
    if counted:
        text, cut, omitted = body[: counted.start()], True, int(counted.group(1))
    elif body.endswith(_CUT_UNCOUNTED):
        text, cut = body[: -len(_CUT_UNCOUNTED)], True
    else:
        text, cut = body, False
    content_type = str(observation["content_type"])
    if observation["status"] == "":
        try:
            value = _Parser(text, cut).parse()
        except ValueError:
            value = text  # not JSON (e.g. "14,11,15,13,12")
        return Recorded("derived", value, text, cut, omitted)
    if content_type.startswith("application/json"):
        return Recorded("json", _Parser(text, cut).parse(), text, cut, omitted)
    if body == "":
        return Recorded("empty", None, text, cut, omitted)
    return Recorded("text", text, text, cut, omitted)


def escaped(text: str) -> str:
    """A text body as the observations record it: line breaks written as `\\r`, `\\n`."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class _Parser:
    """JSON that may end early (cut) and may hold `...` placeholders."""

    def __init__(self, text: str, cut: bool) -> None:
        self.text = text
        self.cut = cut

    def parse(self) -> Any:
        value, end, _ = self.value(0)
        if self.skip(end) != len(self.text):
            raise ValueError(f"trailing text at {end}")
        if value is _MISSING:
            raise ValueError("no value")
        return value

    def skip(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in _WHITESPACE:
            i += 1
        return i

    def value(self, i: int) -> tuple[Any, int, bool]:
        """(value, end, complete); an incomplete container comes back cut, an incomplete
        scalar as _MISSING."""
        text = self.text
        i = self.skip(i)
        if i >= len(text):
            return _MISSING, i, False
        if text.startswith("...", i):
            end = i + 3
            while end < len(text) and text[end] not in ",]}":
                end += 1
            return ANY, end, True
        if text[i] == "{":
            return self.members(i + 1)
        if text[i] == "[":
            return self.elements(i + 1)
        try:
            scalar, end = _DECODER.raw_decode(text, i)
        except ValueError:
            if self.cut:
                return _MISSING, len(text), False
            raise
        if end >= len(text) and self.cut and not isinstance(scalar, str):
            return _MISSING, end, False  # a number at the cut may have lost digits
        return scalar, end, True

    def members(self, i: int) -> tuple[Any, int, bool]:
        text = self.text
        i = self.skip(i)
        if text.startswith("...", i):
            end = text.index("}", i)
            return ANY_OBJECT, end + 1, True
        found: dict[str, Any] = {}
        if i < len(text) and text[i] == "}":
            return found, i + 1, True
        while True:
            key, i, complete = self.value(i)
            if not complete:
                return CutDict(found), i, False
            if not isinstance(key, str):
                raise ValueError(f"object key expected at {i}")
            i = self.skip(i)
            if i >= len(text):
                return CutDict(found), i, False
            if text[i] != ":":
                raise ValueError(f"':' expected at {i}")
            item, i, complete = self.value(i + 1)
            if item is not _MISSING:
                found[key] = item
            if not complete:
                return CutDict(found), i, False
            i = self.skip(i)
            if i >= len(text):
                return CutDict(found), i, False
            if text[i] == "}":
                return found, i + 1, True
            if text[i] != ",":
                raise ValueError(f"',' expected at {i}")
            i += 1

    def elements(self, i: int) -> tuple[Any, int, bool]:
        text = self.text
        found: list[Any] = []
        i = self.skip(i)
        if i < len(text) and text[i] == "]":
            return found, i + 1, True
        while True:
            item, i, complete = self.value(i)
            if item is not _MISSING:
                found.append(item)
            if not complete:
                return CutList(found), i, False
            i = self.skip(i)
            if i >= len(text):
                return CutList(found), i, False
            if text[i] == "]":
                return found, i + 1, True
            if text[i] != ",":
                raise ValueError(f"',' expected at {i}")
            i += 1


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def shape(value: Any) -> Hashable:
    """What a value looks like, values left out: kinds, keys, element shapes."""
    if isinstance(value, Mapping):
        return ("object", tuple(sorted((str(k), shape(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(sorted({shape(v) for v in value}, key=repr)))
    return kind(value)


def differences(
    recorded: Any,
    answered: Any,
    *,
    exact: bool | Collection[str] = False,
    sized: bool = False,
    path: str = "body",
) -> list[str]:
    """How `answered` differs from `recorded` (empty: same shape). `exact`: values must be
    equal too (a collection: only under these top-level keys); `sized`: lists must have
    the recorded length."""
    if recorded is ANY:
        return []
    if recorded is ANY_OBJECT:
        return [] if isinstance(answered, Mapping) else [f"{path}: expected an object"]
    if isinstance(recorded, Mapping):
        return _object_differences(recorded, answered, exact=exact, sized=sized, path=path)
    deep = exact if isinstance(exact, bool) else False
    if isinstance(recorded, list):
        return _list_differences(recorded, answered, exact=deep, sized=sized, path=path)
    if kind(recorded) != kind(answered):
        return [f"{path}: expected {kind(recorded)} {recorded!r}, got {answered!r}"]
    if deep and recorded != answered:
        return [f"{path}: expected {recorded!r}, got {answered!r}"]
    return []


def _object_differences(
    recorded: Mapping[str, Any],
    answered: Any,
    *,
    exact: bool | Collection[str],
    sized: bool,
    path: str,
) -> list[str]:
    if not isinstance(answered, Mapping):
        return [f"{path}: expected an object, got {kind(answered)} {answered!r:.200}"]
    found: list[str] = []
    keys, answered_keys = list(recorded), list(answered)
    if isinstance(recorded, CutDict):
        first = answered_keys[: len(keys)]
        if first != keys:
            found.append(f"{path}: recorded keys {keys} are not the first keys of {first}")
    elif set(keys) != set(answered_keys):
        missing = [k for k in keys if k not in answered]
        extra = [k for k in answered_keys if k not in recorded]
        found.append(f"{path}: keys differ: missing {missing}, extra {extra}")
    for key in keys:
        if key in answered:
            deep = exact if isinstance(exact, bool) else key in exact
            found += differences(recorded[key], answered[key], exact=deep, sized=sized,
                                 path=f"{path}[{key!r}]")  # fmt: skip
    return found


def _list_differences(
    recorded: list[Any], answered: Any, *, exact: bool, sized: bool, path: str
) -> list[str]:
    if not isinstance(answered, list | tuple):
        return [f"{path}: expected a list, got {kind(answered)} {answered!r:.200}"]
    cut = isinstance(recorded, CutList)
    found: list[str] = []
    if cut and len(answered) < len(recorded):
        found.append(f"{path}: {len(answered)} elements, fewer than the {len(recorded)} recorded")
    if not cut and (exact or sized) and len(answered) != len(recorded):
        found.append(f"{path}: {len(answered)} elements, recorded {len(recorded)}")
    if not cut and (not recorded) != (not answered):
        found.append(f"{path}: recorded {len(recorded)} elements, got {len(answered)}")
    for index, (mine, theirs) in enumerate(zip(recorded, answered, strict=False)):
        found += differences(mine, theirs, exact=exact, sized=sized, path=f"{path}[{index}]")
    if cut:  # the recorded elements may be cut too: further ones are not known
        return found
    shapes = {shape(item) for item in recorded}
    for index in range(len(recorded), len(answered)):
        if shapes and shape(answered[index]) not in shapes:
            found.append(f"{path}[{index}]: an element of a shape not recorded")
            break
    return found
