"""YAML reading: YAML 1.2 typing, exact positions, ${ENV} per scalar after parsing."""

from __future__ import annotations

import math

import pytest

from loader.model import Position
from loader.yamlsrc import YamlSyntaxError, load_yaml


def test_no_yaml_1_1_surprises() -> None:
    doc = load_yaml("a: 2020-02-01\nb: no\nc: yes\nd: on\ne: 0755\nf: 1_000\ng: 12:30\n", "m")
    assert doc.value == {
        "a": "2020-02-01",
        "b": "no",
        "c": "yes",
        "d": "on",
        "e": 755,
        "f": "1_000",
        "g": "12:30",
    }


def test_core_schema_types() -> None:
    doc = load_yaml("a: true\nb: null\nc: -3\nd: 1.5e3\ne: .inf\nf: '3'\ng: 0x1F\n", "m")
    assert doc.value["a"] is True and doc.value["b"] is None
    assert doc.value["c"] == -3 and doc.value["d"] == 1500.0 and math.isinf(doc.value["e"])
    assert doc.value["f"] == "3" and doc.value["g"] == 31


def test_positions_of_keys_and_values() -> None:
    doc = load_yaml("top:\n  list:\n    - {x: 1}\n    - y: two\n", "m.yaml")
    assert doc.position(("top", "list", 1, "y")) == Position("m.yaml", 4, 10)
    assert doc.key_position(("top", "list", 1, "y")) == Position("m.yaml", 4, 7)
    assert doc.position(("top", "list", 0, "x")) == Position("m.yaml", 3, 11)
    # A path that does not exist falls back to its nearest ancestor.
    assert doc.position(("top", "list", 0, "missing")) == Position("m.yaml", 3, 7)


def test_variables_are_substituted_per_scalar_and_retyped_when_plain() -> None:
    env = {"PORT": "8080", "NAME": "x: [injected]", "EMPTY": ""}
    text = 'a: ${PORT}\nb: "${PORT}"\nc: ${NAME}\nd: ${EMPTY:-fallback}\ne: $${PORT}\nf: ${NOPE}\n'
    doc = load_yaml(text, "m", env)
    assert doc.value == {
        "a": 8080,
        "b": "8080",
        "c": "x: [injected]",  # text, never YAML structure
        "d": "fallback",
        "e": "${PORT}",
        "f": "${NOPE}",
    }
    assert [(v.name, v.defined) for v in doc.variables] == [
        ("PORT", True),
        ("PORT", True),
        ("NAME", True),
        ("EMPTY", True),
        ("NOPE", False),
    ]
    assert doc.unresolved(("f",))[0].position == Position("m", 6, 4)
    assert doc.raw_scalars[("a",)] == "${PORT}"


def test_duplicate_keys_are_recorded() -> None:
    doc = load_yaml("a: 1\nb: 2\na: 3\n", "m")
    assert doc.duplicate_keys == [(("a",), Position("m", 3, 1))]


def test_merge_keys_expand_with_own_keys_winning() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n", "m")
    assert doc.value["thing"] == {"x": 1, "y": 3}


def test_syntax_error_has_a_position() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml("a: [1, 2\nb: 3\n", "m.yaml")
    assert caught.value.position.path == "m.yaml"
    assert caught.value.position.line == 2
