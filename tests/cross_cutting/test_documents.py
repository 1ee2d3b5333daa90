"""Hostile documents: recursive aliases, alias bombs and deep nesting, in the manifest and
in the setup config, are refused with one positioned problem, in bounded time and memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loader import yamlsrc
from loader.jsonpos import JsonPositions, nesting_problem
from loader.model import Position
from loader.validation import validate
from loader.yamlsrc import MAX_ALIAS_VALUES, MAX_NESTING, YamlSyntaxError, load_yaml
from tests.conftest import DATA
from tests.helpers import write_manifest

CORPUS = DATA / "invalid"
PEAK_BYTES = 50 * 1024 * 1024  # the refusals below must stay under this, whatever the input


def residents(months: range) -> str:
    return "month,pcod,residents\n" + "".join(f"2021-{m:02d}-01,EX01-01,{m}\n" for m in months)


RESIDENTS = residents(range(1, 4))


def peak_memory(work: Callable[[], Any]) -> tuple[Any, int]:
    """`work()`'s result and the peak of the memory it allocated, in bytes."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refusal(text: str) -> YamlSyntaxError:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(text, "m.yaml", {})
    return caught.value


def laughs(levels: int, width: int = 9) -> str:
    """The classic alias bomb: each anchor a list of `width` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


# --- alias expansion -------------------------------------------------------------------


def test_a_billion_laughs_is_refused_at_an_alias_in_bounded_memory() -> None:
    text = laughs(10)  # 9**10: 3.4 billion values from about 400 bytes
    caught, peak = peak_memory(lambda: refusal(text))
    assert caught.message == (
        f"alias *l4: the document's aliases expand to more than {MAX_ALIAS_VALUES:,} values"
    )
    assert caught.position == Position("m.yaml", 6, 10)  # the first *l4, in l5's list
    assert peak < PEAK_BYTES, f"peak {peak / 1e6:.1f} MB"


def test_the_pinned_billion_laughs_manifest_is_one_problem_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(CORPUS / "yaml-billion-laughs")
    report, peak = peak_memory(lambda: validate("manifest.yaml"))
    assert [str(p) for p in report.problems] == [
        "manifest.yaml:21:10: alias *e: the document's aliases expand to more than "
        f"{MAX_ALIAS_VALUES:,} values"
    ]
    assert report.manifest is None
    assert peak < PEAK_BYTES, f"peak {peak / 1e6:.1f} MB"


def test_merge_keys_multiply_too_and_are_bounded() -> None:
    # Each mapping merges the one before nine times over: the merged pairs grow 9x a level
    # even though each resulting mapping stays small.
    lines = ["m0: &m0 {x: 1, y: 2}"]
    for level in range(1, 12):
        sources = ", ".join([f"*m{level - 1}"] * 9)
        lines.append(f"m{level}: &m{level} {{<<: [{sources}], own{level}: 1}}")
    caught, peak = peak_memory(lambda: refusal("\n".join(lines) + "\n"))
    assert "the document's aliases expand to more than" in caught.message
    assert caught.position.line > 1
    assert peak < PEAK_BYTES, f"peak {peak / 1e6:.1f} MB"


def test_the_alias_budget_counts_values_built_through_aliases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yamlsrc, "MAX_ALIAS_VALUES", 10)
    # *a builds its list and 9 scalars: 10 values, exactly the budget.
    within = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: *a\n"
    assert load_yaml(within, "m.yaml", {}).value["b"] == list(range(1, 10))
    caught = refusal(within + "c: *a\n")
    assert caught.position == Position("m.yaml", 3, 4)
    assert caught.message == "alias *a: the document's aliases expand to more than 10 values"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("loop: &r [*r]\n", 1, 11),
        ("loop: &r {self: *r}\n", 1, 17),
        ("loop: &r\n  - a\n  - [b, *r]\n", 3, 9),
        ("m: &m {<<: *m, x: 1}\n", 1, 12),  # a mapping merging itself
        ("a: &a {b: &b {<<: *a}, <<: *b}\n", 1, 19),  # merges that loop back
    ],
)
def test_a_recursive_alias_is_refused_at_the_alias(text: str, line: int, column: int) -> None:
    caught = refusal(text)
    assert caught.position == Position("m.yaml", line, column)
    assert caught.message.startswith("recursive alias *")
    assert caught.message.endswith(": expanding it never ends")


def test_anchors_and_merge_keys_within_the_bound_still_validate(tmp_path: Path) -> None:
    entries = (
        "  - &residents\n"
        "    file: residents.csv\n"
        "    category: residents\n"
        "    spatial_resolution: District\n"
        "    temporal_resolution: &month Month\n"
        "    columns: &columns {date: month, spatial_unit: pcod}\n"
        "  - <<: *residents\n"
        "    file: residents_more.csv\n"
        "    columns: {<<: *columns}\n"
    )
    access = (
        "access:\n"
        "  read:free_data:\n"
        "    - &rule {indicator: residents.residents, temporal_resolution: *month}\n"
        "  read:premium_data:\n"
        "    - {<<: *rule, start: '2021-02'}\n"
    )
    (tmp_path / "residents.csv").write_text(RESIDENTS)
    (tmp_path / "residents_more.csv").write_text(residents(range(4, 7)))
    manifest = write_manifest(tmp_path, {}, entries=entries, access=access)
    report = validate(manifest)
    assert report.ok, [str(p) for p in report.problems]
    assert report.manifest is not None
    first, second = report.manifest.datasets
    assert (second.category_id, second.temporal_resolution) == ("residents", "Month")
    assert second.unit_columns == ("pcod",)
    assert second.files != first.files
    assert len(report.manifest.access) == 2


# --- nesting depth ---------------------------------------------------------------------


def nested_sequences(levels: int) -> str:
    """A root mapping (one level) holding `levels - 1` nested flow sequences."""
    return "x: " + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "\n"


def nested_mappings(levels: int) -> str:
    """`levels` nested block mappings, one a line, the root included."""
    return "".join("  " * depth + f"k{depth}:\n" for depth in range(levels)) + "  " * levels + "1\n"


@pytest.mark.parametrize("nested", [nested_sequences, nested_mappings])
def test_nesting_up_to_the_limit_is_fine_one_more_is_refused(
    nested: Callable[[int], str],
) -> None:
    assert load_yaml(nested(MAX_NESTING), "m.yaml", {}).value is not None
    caught = refusal(nested(MAX_NESTING + 1))
    assert caught.message == f"nested deeper than {MAX_NESTING} levels"
    if nested is nested_sequences:  # at the 65th collection: the 64th `[`
        assert caught.position == Position("m.yaml", 1, 4 + MAX_NESTING - 1)
    else:  # the value of the 64th key opens the 65th mapping
        assert caught.position == Position("m.yaml", MAX_NESTING + 1, 2 * MAX_NESTING + 1)


def test_five_thousand_levels_are_refused_before_the_recursion_limit() -> None:
    for text in (nested_sequences(5000), "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"):
        assert refusal(text).message == f"nested deeper than {MAX_NESTING} levels"
    assert refusal("x:\n" + "- " * 5000 + "1\n").position == Position("m.yaml", 2, 127)


def test_nesting_through_aliases_is_bounded_too() -> None:
    half = MAX_NESTING // 2 + 1
    inner = "[" * half + "]" * half
    caught = refusal(f"a: &a {inner}\nb: {'[' * half}*a{']' * half}\n")
    assert caught.message == f"nested deeper than {MAX_NESTING} levels through alias *a"
    assert caught.position == Position("m.yaml", 2, 4 + half)


def test_a_long_chain_of_merges_is_bounded() -> None:
    lines = ["m0: &m0 {x: 0}"] + [
        f"m{i}: &m{i} {{<<: *m{i - 1}, x{i}: {i}}}" for i in range(1, 2 * MAX_NESTING)
    ]
    caught = refusal("\n".join(lines) + "\n")
    assert caught.message == f"merge keys chained deeper than {MAX_NESTING} levels"


# --- the setup config ------------------------------------------------------------------


def test_json_nesting_up_to_the_limit_is_fine_one_more_is_refused() -> None:
    at_limit = "[" * MAX_NESTING + "]" * MAX_NESTING
    assert nesting_problem("c.json", at_limit) is None
    over = '{"a": "[[[[", "b":\n  ' + "[" * MAX_NESTING + "]" * MAX_NESTING + "}"
    problem = nesting_problem("c.json", over)
    assert problem is not None
    # The object is one level, brackets inside the string none: the 64th `[` crosses.
    assert str(problem) == f"c.json:2:{2 + MAX_NESTING}: nested deeper than {MAX_NESTING} levels"


def test_a_config_nested_100000_deep_is_one_positioned_problem(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    text = manifest.read_text()
    manifest.write_text(text.replace(next(s for s in text.splitlines() if s.startswith("setup:")),
                                     "setup: config.json"))  # fmt: skip
    report, peak = peak_memory(lambda: validate(manifest))
    [problem] = report.problems
    assert problem.position == Position(str(problem.position.path), 1, MAX_NESTING + 1)
    assert problem.position.path.endswith("config.json")
    assert problem.message == f"nested deeper than {MAX_NESTING} levels"
    assert peak < PEAK_BYTES, f"peak {peak / 1e6:.1f} MB"


def test_json_positions_stay_linear_on_deep_input() -> None:
    # Paths stop growing below max_depth: 100,000 levels, not 5 billion path elements.
    text = '{"a": ' + "[" * 100_000 + "1" + "]" * 100_000 + ', "b": 2}'
    positions = JsonPositions("c.json", text)
    b, peak = peak_memory(lambda: positions.position(("b",)))  # the first call scans
    assert b == Position("c.json", 1, 200_015)
    assert positions.position(("a", 0, 0, 0)) == Position("c.json", 1, 10)
    assert positions.position(("a", *[0] * 50)) == Position("c.json", 1, 10)  # deepest kept
    assert peak < PEAK_BYTES, f"peak {peak / 1e6:.1f} MB"
