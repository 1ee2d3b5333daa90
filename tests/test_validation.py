"""loader/validation.py on its own: the packaged schemas (`schema_text`), schema
violations as positioned one-line problems (`schema_problems`: each validator's message,
the key or value it lands on, values shortened or never shown, skipped and rejected
paths), the `ValidationReport` and its views, `validate` (unreadable manifests, the
environment it reads, data files read or not, datasets two files both produce, access
rules that select nothing, the order of problems), `load_manifest`, and the plan schema
check `plan_schema_error`. Property tests feed garbage to each entry point: problems
come back, never exceptions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loader.data import FileReport
from loader.model import (
    DatasetKey,
    DatasetStats,
    DatasetSummary,
    Manifest,
    ManifestError,
    Position,
    Problem,
    Severity,
)
from loader.validation import (
    SCHEMA_NAMES,
    ValidationReport,
    _ordered,
    load_manifest,
    plan_schema_error,
    schema_problems,
    schema_text,
    validate,
)
from loader.yamlsrc import JsonPath, load_yaml
from tests.conftest import DATA, ROOT
from tests.helpers import EXAMPLE_CONFIG, write_manifest

BASE = """\
version: 1
targets:
  local: {url: 'local:x.db'}
setup: config.json
revision: r1
datasets:
  - file: a.csv
    category: residents
    spatial_resolution: District
    temporal_resolution: Month
    columns: {date: month, spatial_unit: pcod}
"""
RESIDENTS = "month,pcod,residents\n2021-01-01,EX01-01,1\n2021-02-01,EX01-01,2\n"
PLANS = DATA / "compat" / "plans"
URL_FORMS = "target url must be local:PATH or http(s)://host/v1"


def problems_of(
    text: str, skip: Callable[[JsonPath], bool] | None = None
) -> tuple[list[str], set[JsonPath]]:
    """schema_problems of a YAML text, as `file:line:column: message`, and what it rejected."""
    document = load_yaml(text, "m.yaml", {})
    rejected: set[JsonPath] = set()
    found = schema_problems(
        document.value,
        document.position,
        document.key_position,
        skip=skip or (lambda path: False),
        rejected=rejected,
    )
    return [str(p) for p in found], rejected


def config_problems(config: Any) -> list[tuple[str, str]]:
    """schema_problems against the config schema, located by a fake naming the path."""

    def locate(path: JsonPath) -> Position:
        return Position("config@" + ".".join(map(str, path)))

    found = schema_problems(config, locate, locate, schema="config.schema.json")
    return [(p.position.path, p.message) for p in found]


def summary(key: DatasetKey, source: str) -> DatasetSummary:
    return DatasetSummary(key, "single_location", "r1", "0" * 64, DatasetStats(1, 1, 1, 1), source)


def key(month: int) -> DatasetKey:
    return DatasetKey("residents", "residents.residents", 2, 2, f"2021-{month:02d}-01 00:00:00")


def empty_manifest(path: str = "m.yaml") -> Manifest:
    return Manifest(path, 1, {}, None, {}, (), (), "r1")


# --- schema_text -----------------------------------------------------------------------


def test_schema_text_is_the_manifest_schema_by_default() -> None:
    text = schema_text()
    assert text == (ROOT / "schemas" / "manifest.schema.json").read_text(encoding="utf-8")
    assert json.loads(text)["title"] == "flowkit-loader manifest"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_is_draft_2020_12_json_named_by_its_id(name: str) -> None:
    schema = json.loads(schema_text(name))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].rsplit("/", 1)[-1] == name


# --- schema_problems: messages and positions -------------------------------------------


def test_a_valid_manifest_has_no_schema_problems_and_rejects_nothing() -> None:
    assert problems_of(BASE) == ([], set())


@pytest.mark.parametrize(("written", "shown"), [("2", "2"), ("'1'", '"1"'), ("one", '"one"')])
def test_a_wrong_version_gets_the_schemas_own_message(written: str, shown: str) -> None:
    found, rejected = problems_of(BASE.replace("version: 1", f"version: {written}"))
    assert found == [
        f"m.yaml:1:10: unsupported manifest version: this loader reads version 1, not {shown}"
    ]
    assert rejected == {("version",)}


def test_unknown_keys_land_on_the_key_sorted_by_name_with_a_close_match() -> None:
    found, rejected = problems_of(BASE + "zeta: 1\nrevison: r2\n")
    assert found == [
        "m.yaml:13:1: unknown key 'revison' (did you mean 'revision'?)",
        "m.yaml:12:1: unknown key 'zeta'",
    ]
    assert rejected == {()}  # the mapping holding them


def test_a_nested_unknown_key_rejects_its_mapping() -> None:
    found, rejected = problems_of(
        BASE.replace("spatial_unit: pcod", "spatial_unit: pcod, orign: x")
    )
    assert found == ["m.yaml:11:48: unknown key 'orign' (did you mean 'origin'?)"]
    assert rejected == {("datasets", 0, "columns")}


def test_missing_keys_are_named_with_where_they_are_missing() -> None:
    text = BASE.replace("revision: r1\n", "").replace(
        "    columns: {date: month, spatial_unit: pcod}\n", ""
    )
    found, _ = problems_of(text)
    assert found == [
        "m.yaml:1:1: missing required key 'revision'",
        "m.yaml:6:5: missing required key 'columns' in datasets.0",
    ]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("3", "an integer"),
        ("1.5", "a number"),
        ("true", "true or false"),
        ("~", "null"),
        ("[r1]", "a list"),
        ("{r: 1}", "a mapping"),
    ],
)
def test_a_value_of_the_wrong_type_names_both_types(value: str, kind: str) -> None:
    found, rejected = problems_of(BASE.replace("revision: r1", f"revision: {value}"))
    assert found == [f"m.yaml:5:11: revision must be text, not {kind}"]
    assert rejected == {("revision",)}


def test_a_value_of_several_allowed_types_names_them_all() -> None:
    found, _ = problems_of(BASE.replace("setup: config.json", "setup: [config.json]"))
    assert found == ["m.yaml:4:8: setup must be text or a mapping, not a list"]


def test_a_document_that_is_not_a_mapping_is_called_the_manifest() -> None:
    assert problems_of("- version: 1\n")[0] == [
        "m.yaml:1:1: the manifest must be a mapping, not a list"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE.replace("revision: r1", "revision: ''"), "m.yaml:5:11: revision must not be empty"),
        (
            BASE.replace("targets:\n  local: {url: 'local:x.db'}", "targets: {}"),
            "m.yaml:2:10: targets must not be empty",
        ),
        (
            BASE.partition("datasets:")[0] + "datasets: []\n",
            "m.yaml:6:11: datasets must not be empty",
        ),
        (
            BASE + "    indicators: {residents: ''}\n",
            "m.yaml:12:29: datasets.0.indicators.residents must not be empty",
        ),
    ],
    ids=["text", "mapping", "list", "nested-text"],
)
def test_an_empty_value_where_something_is_needed(text: str, expected: str) -> None:
    assert problems_of(text)[0] == [expected]


def test_an_id_below_the_minimum_shows_the_bound_and_the_value() -> None:
    found, rejected = problems_of(BASE + "ids: {spatial_resolutions: {District: 0}}\n")
    assert found == ["m.yaml:12:39: ids.spatial_resolutions.District must be at least 1, not 0"]
    assert rejected == {("ids", "spatial_resolutions", "District")}


def test_a_pattern_with_its_own_message_shows_the_value() -> None:
    found, rejected = problems_of(BASE.replace("local:x.db", "backend.example.org"))
    assert found == [f'm.yaml:3:16: {URL_FORMS}, not "backend.example.org"']
    assert rejected == {("targets", "local", "url")}


def test_a_long_value_is_shortened_visibly_to_sixty_characters() -> None:
    found, _ = problems_of(BASE.replace("local:x.db", "x" * 100))
    assert found == [f'm.yaml:3:16: {URL_FORMS}, not "{"x" * 56}...']


def test_a_pattern_without_a_message_says_the_form_is_unexpected() -> None:
    found, rejected = problems_of(BASE.replace("  local:", "  'my target':"))
    assert found == ['m.yaml:3:3: targets does not have the expected form: "my target"']
    assert rejected == {("targets",)}


def test_a_value_under_a_credentials_path_is_never_shown() -> None:
    text = BASE.replace("  local: {url: 'local:x.db'}", "  credentials: {url: 's3cr3t-host'}")
    found, _ = problems_of(text)
    assert found == [f"m.yaml:3:22: {URL_FORMS}"]
    assert "s3cr3t" not in "".join(found)


def test_a_rule_matching_none_of_its_forms_falls_back_to_the_schemas_words() -> None:
    rule = "{indicator: residents.residents, temporal_resolution: {a: 1}}"
    text = f"{BASE}access:\n  read:x:\n    - {rule}\n"
    [found], _ = problems_of(text)
    assert found.startswith("m.yaml:14:61: access.read:x.0.temporal_resolution: ")
    assert found.endswith("is not valid under any of the given schemas")


def test_skipped_paths_are_neither_reported_nor_rejected() -> None:
    text = BASE.replace("revision: r1", "revision: 5").replace("version: 1", "version: 2")
    found, rejected = problems_of(text, skip=lambda path: path == ("revision",))
    assert found == [
        "m.yaml:1:10: unsupported manifest version: this loader reads version 1, not 2"
    ]
    assert rejected == {("version",)}


def test_the_config_schema_names_the_allowed_values_of_an_enum() -> None:
    config = json.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["categories"][1]["type"] = "area"
    config["temporal_resolutions"][0]["relativedelta_unit"] = "month"
    del config["data_providers"][0]["name"]
    assert config_problems(config) == [
        ("config@data_providers.0", "missing required key 'name' in data_providers.0"),
        (
            "config@categories.1.type",
            'categories.1.type must be one of: single_location, flow; not "area"',
        ),
        (
            "config@temporal_resolutions.0.relativedelta_unit",
            "temporal_resolutions.0.relativedelta_unit must be one of: years, months, weeks, "
            'days, hours; not "month"',
        ),
    ]


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.floats(allow_nan=False),
        st.text(max_size=6),
        st.sampled_from(["local:x", "config.json", "District", "Month", "residents"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    [
                        "version",
                        "targets",
                        "url",
                        "datasets",
                        "file",
                        "columns",
                        "ids",
                        "access",
                        "indicator",
                        "credentials",
                        "setup",
                    ]
                ),
                st.text(max_size=4),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=10,
)


@settings(deadline=None)
@given(instance=json_values, schema=st.sampled_from(SCHEMA_NAMES))
def test_any_value_gives_problems_exactly_when_it_is_rejected(instance: Any, schema: str) -> None:
    rejected: set[JsonPath] = set()
    found = schema_problems(
        instance,
        lambda p: Position("m.yaml"),
        lambda p: Position("k.yaml"),
        schema,
        rejected=rejected,
    )
    assert bool(found) == bool(rejected)
    assert all(isinstance(p, Problem) and p.message and p.is_error for p in found)


# --- ValidationReport ------------------------------------------------------------------


def test_a_report_splits_errors_from_warnings_and_is_ok_with_warnings_only() -> None:
    warning = Problem(Position("m.yaml", 3, 1), "selects nothing", Severity.WARNING)
    error = Problem(Position("m.yaml", 5, 1), "broken")
    report = ValidationReport("m.yaml", problems=[warning, error])
    assert (report.errors, report.warnings, report.ok) == ([error], [warning], False)
    report.problems.remove(error)
    assert report.ok


def test_report_summaries_are_every_files_in_file_order() -> None:
    first = FileReport(0, "a.csv", "/d/a.csv", [summary(key(1), "a.csv"), summary(key(2), "a.csv")])
    second = FileReport(1, "b.csv", "/d/b.csv", [summary(key(3), "b.csv")])
    report = ValidationReport("m.yaml", files=[first, FileReport(0, "e.csv", "/d/e.csv"), second])
    assert [(s.source, s.key.dt[:7]) for s in report.summaries] == [
        ("a.csv", "2021-01"),
        ("a.csv", "2021-02"),
        ("b.csv", "2021-03"),
    ]


def test_manifest_or_raise_returns_the_manifest_despite_warnings() -> None:
    manifest = empty_manifest()
    warning = Problem(Position("m.yaml", 3, 1), "selects nothing", Severity.WARNING)
    assert ValidationReport("m.yaml", manifest, [warning]).manifest_or_raise() is manifest


def test_manifest_or_raise_names_the_first_error_alone() -> None:
    report = ValidationReport(
        "m.yaml", empty_manifest(), [Problem(Position("m.yaml", 2, 3), "bad")]
    )
    with pytest.raises(ManifestError) as raised:
        report.manifest_or_raise()
    assert str(raised.value) == "m.yaml:2:3: bad"


def test_manifest_or_raise_counts_the_other_errors_and_says_how_to_see_them() -> None:
    errors = [Problem(Position("m.yaml", n, 1), f"bad {n}") for n in (4, 7, 9)]
    warning = Problem(Position("m.yaml", 1, 1), "meh", Severity.WARNING)
    report = ValidationReport("dir/m.yaml", empty_manifest(), [warning, *errors])
    with pytest.raises(ManifestError) as raised:
        report.manifest_or_raise()
    assert str(raised.value) == (
        "m.yaml:4:1: bad 4 (and 2 more problems; `flowkit-loader validate dir/m.yaml` lists them)"
    )


# --- validate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "manifest.yaml: manifest not found"),
        (b"- a\n- b\n", "manifest.yaml:1:1: a manifest must be a mapping of keys"),
        (b"42\n", "manifest.yaml:1:1: a manifest must be a mapping of keys"),
        (
            b"\xff\xfeversion: 1\n",
            "manifest.yaml: cannot read manifest: 'utf-8' codec can't decode byte 0xff in "
            "position 0: invalid start byte",
        ),
    ],
    ids=["missing", "a-list", "a-number", "not-utf8"],
)
def test_a_manifest_that_cannot_be_read_is_one_problem_and_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "manifest.yaml").write_bytes(content)
    report = validate("manifest.yaml")
    assert [str(p) for p in report.problems] == [expected]
    assert report.manifest is None and report.files == [] and not report.ok


def test_a_valid_manifest_reads_each_data_file_into_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = validate(write_manifest(tmp_path, {"residents.csv": RESIDENTS}))
    assert report.ok and report.problems == []
    assert report.path == "manifest.yaml"
    assert report.manifest is not None and report.manifest.revision == "r1"
    assert [f.path for f in report.files] == ["residents.csv"]
    assert [s.key for s in report.summaries] == [key(1), key(2)]


def test_without_data_no_data_file_is_read(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": "month,pcod,residents\nnot,a,date\n"})
    assert not validate(manifest).ok
    report = validate(manifest, data=False)
    assert report.ok and report.files == [] and report.summaries == []
    assert report.manifest is not None and len(report.manifest.datasets) == 1


def test_environ_replaces_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    manifest.write_text(manifest.read_text().replace("revision: r1", "revision: ${FKL_REV}"))
    monkeypatch.setenv("FKL_REV", "from-the-process")
    given = validate(manifest, environ={"FKL_REV": "r9"})
    assert given.ok and {s.revision for s in given.summaries} == {"r9"}
    from_process = validate(manifest).manifest
    assert from_process is not None and from_process.revision == "from-the-process"
    unset = validate(manifest, environ={})
    assert [str(p) for p in unset.problems] == [
        "manifest.yaml:8:11: environment variable FKL_REV is not set"
    ]


def test_an_unset_variable_is_not_also_a_schema_error(tmp_path: Path) -> None:
    extra = "missing: ${FKL_MISSING}\n"
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS}, extra=extra)
    unset = validate(manifest, environ={}, data=False)
    assert [p.message for p in unset.problems] == ["environment variable FKL_MISSING is not set"]
    as_text = validate(manifest, environ={"FKL_MISSING": "NA"}, data=False)
    assert [p.message for p in as_text.problems] == ["missing must be a list, not text"]
    assert {p.position.line for p in unset.problems + as_text.problems} == {9}


def test_problems_come_manifest_first_then_each_file_by_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    residents = RESIDENTS.replace("2021-02-01,EX01-01", "2021-02-01,EX09-09")
    manifest = write_manifest(tmp_path, {"residents.csv": residents}, extra="zzz: 1\n")
    manifest.write_text(manifest.read_text().replace("District: 2}", "District: 2, Province: 3}"))
    config = json.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    del config["languages"][0]["name"]
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    # Found in another order: the schema's (line 9, then config.json) before the builder's
    # (line 6), the data file's last.
    assert [str(p) for p in validate(manifest).problems] == [
        "manifest.yaml:6:49: ids.spatial_resolutions names 'Province', which is not in the "
        "config (known: District, Region)",
        "manifest.yaml:9:1: unknown key 'zzz'",
        "config.json:3:5: missing required key 'name' in languages.0",
        "residents.csv:3:12: unknown spatial unit 'EX09-09' in column 'pcod': not among the "
        "ADM2_PCODE codes of 'District'",
    ]


def test_ordered_keeps_one_of_each_problem_and_files_in_order_of_appearance() -> None:
    def at(path: str, line: int, column: int = 1, message: str = "p") -> Problem:
        return Problem(Position(path, line, column), message)

    found = [
        at("b.csv", 9),
        at("m.yaml", 7, 3),
        at("a.csv", 2),
        at("b.csv", 1),
        at("m.yaml", 7, 2),
        at("b.csv", 9),  # the same problem again
        Problem(Position("m.yaml"), "no line"),
        at("m.yaml", 7, 2, "second at the same place"),
    ]
    assert [str(p) for p in _ordered(found, "m.yaml")] == [
        "m.yaml: no line",
        "m.yaml:7:2: p",
        "m.yaml:7:2: second at the same place",
        "m.yaml:7:3: p",
        "b.csv:1:1: p",
        "b.csv:9:1: p",
        "a.csv:2:1: p",
    ]


ONE_TABLE = "each file is a table of its own, so the rows of one dataset must all be in one file"


def test_datasets_two_files_both_produce_are_reported_at_the_later_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    january = "month,pcod,residents\n2021-01-01,EX01-01,5\n"
    files = {"a.csv": RESIDENTS, "b.csv": january, "c.csv": RESIDENTS}
    report = validate(write_manifest(tmp_path, files))
    assert [str(p) for p in report.problems] == [
        "b.csv:1:1: dataset residents.residents srid=2 trid=2 2021-01-01 00:00:00 also comes "
        f"from a.csv: {ONE_TABLE}",
        "c.csv:1:1: dataset residents.residents srid=2 trid=2 2021-01-01 00:00:00 also comes "
        f"from a.csv (and 1 more): {ONE_TABLE}",
    ]


def test_an_access_rule_that_selects_no_dataset_is_a_warning_at_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    access = (
        "access:\n"
        "  read:free_data:\n"
        "    - {indicator: residents.residents}\n"
        "  read:premium_data:\n"
        "    - {indicator: residents.arrived}\n"
    )
    report = validate(write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=access))
    assert [str(p) for p in report.problems] == [
        "manifest.yaml:19:7: warning: access rule for read:premium_data selects no dataset"
    ]
    assert report.ok


def test_a_target_the_manifest_lacks_is_reported_at_the_targets_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = validate(write_manifest(tmp_path, {"residents.csv": RESIDENTS}), target="prod")
    assert [str(p) for p in report.problems] == [
        "manifest.yaml:2:1: no target named 'prod' (targets: local)"
    ]
    assert len(report.summaries) == 2  # the data is still read, for the default target


_garbage = st.one_of(
    st.binary(max_size=48),
    st.text(alphabet=st.sampled_from(list("ab:-[]{}\n #&*!|'\"$%,.01")), max_size=48).map(
        str.encode
    ),
    st.sampled_from([b"version: 1\n", b"setup: config.json\n", b"targets: {a: {url: x}}\n"]),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=_garbage)
def test_garbage_manifests_give_problems_in_the_manifest_never_exceptions(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(content)
    report = validate(path, environ={})
    assert report.problems and not report.ok
    assert all(p.position.path == report.path for p in report.problems)


# --- load_manifest ---------------------------------------------------------------------


def test_load_manifest_reads_no_data_file(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": "not,a\ncsv,file,at,all\n"})
    loaded = load_manifest(manifest, environ={})
    assert [d.category_id for d in loaded.datasets] == ["residents"]
    assert loaded.default_target == "local"


def test_load_manifest_raises_the_first_error_and_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS}, extra="zzz: 1\nyyy: 2\n")
    with pytest.raises(ManifestError) as raised:
        load_manifest(manifest)
    assert str(raised.value) == (
        "manifest.yaml:9:1: unknown key 'zzz' (and 1 more problems; "
        "`flowkit-loader validate manifest.yaml` lists them)"
    )


def test_load_manifest_passes_target_and_environment_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    manifest.write_text(manifest.read_text().replace("revision: r1", "revision: ${FKL_REV}"))
    assert load_manifest(manifest, environ={"FKL_REV": "r7"}).revision == "r7"
    with pytest.raises(ManifestError, match=r"^manifest.yaml:2:1: no target named 'prod' "):
        load_manifest(manifest, target="prod", environ={"FKL_REV": "r7"})


# --- plan_schema_error -----------------------------------------------------------------


def plan(name: str = "plan.json") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PLANS / name).read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("name", ["plan.json", "plan-signed.json"])
def test_a_saved_plan_fits_the_plan_schema(name: str) -> None:
    assert plan_schema_error(plan(name)) is None


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        node: Any = document
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set(("summary", "create"), -1), "summary/create: -1 is less than the minimum of 0"),
        (_set(("format_version",), 1), "format_version: 2 was expected"),
        (_set(("digest",), "ABC"), "digest: 'ABC' does not match '^[0-9a-f]{64}$'"),
        (
            _set(("surplus",), True),
            "top level: Additional properties are not allowed ('surplus' was unexpected)",
        ),
        (_set(("roles",), ["admin", "admin"]), "roles: ['admin', 'admin'] has non-unique elements"),
    ],
)
def test_a_plan_against_the_schema_says_where_and_what(
    edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    document = copy.deepcopy(plan())
    edit(document)
    assert plan_schema_error(document) == expected


@pytest.mark.parametrize("data", [[], None, "plan", 2])
def test_a_plan_that_is_not_an_object_is_wrong_at_the_top_level(data: object) -> None:
    assert plan_schema_error(data) == f"top level: {data!r} is not of type 'object'"


def test_a_long_plan_message_is_cut() -> None:
    document = plan()
    document["manifest"] = list(range(200))
    wrong = plan_schema_error(document)
    assert wrong is not None
    assert wrong.startswith("manifest: [0, 1, 2, 3") and wrong.endswith("...")
    assert len(wrong) == len("manifest: ") + 160


@settings(deadline=None)
@given(data=json_values)
def test_any_random_document_is_a_wrong_plan_in_one_short_line(data: Any) -> None:
    wrong = plan_schema_error(data)
    assert wrong is not None  # nothing random has all fourteen required fields
    assert ": " in wrong and "\n" not in wrong
    assert len(wrong) <= 60 + len(": ") + 160


def corrupted_config(directory: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A manifest over the example config with `change` made to the config's JSON."""
    manifest = write_manifest(directory, {"residents.csv": RESIDENTS})
    config = json.loads((directory / "config.json").read_text())
    change(config)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return manifest


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda c: c["indicators"][0].update(category_id=["residents"]),
            "config.json:50:22: indicators.0.category_id must be text, not a list",
        ),
        (
            lambda c: c["indicators"][0].update(category_id={"id": "residents"}),
            "config.json:50:22: indicators.0.category_id must be text, not a mapping",
        ),
        (
            lambda c: c["temporal_resolutions"][0].update(relativedelta_num="x"),
            "config.json:164:28: temporal_resolutions.0.relativedelta_num must be an integer, "
            "not text",
        ),
        (
            lambda c: c["temporal_resolutions"][0].update(relativedelta_num=[1]),
            "config.json:164:28: temporal_resolutions.0.relativedelta_num must be an integer, "
            "not a list",
        ),
    ],
    ids=["category-id-list", "category-id-object", "step-text", "step-list"],
)
def test_a_config_value_of_the_wrong_type_is_a_problem_never_a_crash(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    report = validate(corrupted_config(tmp_path, change), environ={})
    shown = [str(p).removeprefix(f"{tmp_path}/") for p in report.errors]
    assert shown[0] == expected  # the schema's problem, first: the builder skipped the value
    assert report.manifest is not None


def test_an_undefined_variable_in_an_access_rule_is_reported_once_as_such(
    tmp_path: Path,
) -> None:
    access = (
        "access:\n  read:free_data:\n"
        "    - {indicator: residents.residents, temporal_resolution: Month,\n"
        "       start: '2021-01', duration: '${FKL_DUR}'}\n"
    )
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=access)
    for data in (True, False):
        report = validate(manifest, environ={}, data=data)
        assert [str(p) for p in report.errors] == [
            f"{manifest}:18:36: environment variable FKL_DUR is not set"
        ]
        assert report.manifest is not None and report.manifest.access == ()
