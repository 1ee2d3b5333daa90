"""loader/config.py on its own: ConfigBuilder turning a setup config and the manifest's
`ids` and `unit_properties` into a SetupConfig, and the problems it finds on the way.

Covered: where each entity's id comes from (the config, `ids`, neither, both in
conflict), its label (code, name, label or id), duplicate labels and ids, `ids` naming
what the config lacks, categories and their indicators, temporal resolutions and date
formats that would collide, spatial resolutions, their boundaries (TopoJSON and GeoJSON)
and unit code properties (inferred or explicit), and the helpers `is_unique_code` and
`boundary_properties`. Every problem is checked at the path its locator was asked for
(fake locators name the path) and, in one case, at the line and column of a config.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.config import (
    ConfigBuilder,
    Locate,
    boundary_properties,
    is_unique_code,
    unit_code_properties,
)
from loader.jsonpos import JsonPositions
from loader.model import (
    Category,
    EntityKind,
    Position,
    SetupConfig,
    SpatialResolution,
    TemporalResolution,
)
from tests.helpers import EXAMPLE_CONFIG

EXAMPLE = json.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))  # the builder copies, never edits
NO_SRID = (
    "has no srid: set it in the config or under ids.spatial_resolutions in the manifest "
    "(the backend would assign a new one on every setup, hiding existing data)"
)


def at(where: str) -> Locate:
    """A fake locator: the position names the file it stands for and the path asked."""
    return lambda path: Position(f"{where}@{'.'.join(map(str, path))}")


def build(
    config: Mapping[str, Any],
    ids: Mapping[str, Mapping[str, int]] | None = None,
    unit_properties: Mapping[str, str] | None = None,
) -> tuple[SetupConfig, list[tuple[str, str]]]:
    """The built setup and its problems as (where, message)."""
    builder = ConfigBuilder(
        config, at("config"), ids or {}, at("ids"), unit_properties or {}, at("unit_key")
    )
    setup = builder.build()
    return setup, [(str(p.position), p.message) for p in builder.problems]


def spatial(label: str, index: int = 1, **fields: Any) -> dict[str, Any]:
    return {"label": label, "index": index, **fields}


def temporal(label: str, unit: str, date_format: str | None, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"label": label, "index": 1, "relativedelta_unit": unit, **fields}
    if date_format is not None:
        item["date_format"] = date_format
    return item


def topology(*properties: Any) -> dict[str, Any]:
    geometries = [{"type": "Polygon", "arcs": [[0]], "properties": p} for p in properties]
    return {
        "type": "Topology",
        "objects": {"admin": {"type": "GeometryCollection", "geometries": geometries}},
    }


def feature_collection(*properties: Any) -> dict[str, Any]:
    features = [{"type": "Feature", "geometry": None, "properties": p} for p in properties]
    return {"type": "FeatureCollection", "features": features}


def ids_of(setup: SetupConfig, kind: EntityKind) -> dict[str, int | str]:
    return {e.label: e.id for e in setup.entities if e.kind is kind}


# --- ids and labels --------------------------------------------------------------------


def test_ids_written_in_the_config_are_kept_without_any_manifest_ids() -> None:
    config = {
        "languages": [{"lid": 3, "code": "en", "name": "English"}],
        "data_providers": [{"dpid": 7, "name": "Operator"}],
        "spatial_resolutions": [spatial("District", srid=5)],
        "temporal_resolutions": [temporal("Day", "days", "%Y-%m-%d", trid=4)],
    }
    setup, problems = build(config)
    assert problems == []
    assert [(e.kind, e.id, e.label) for e in setup.entities] == [
        (EntityKind.LANGUAGE, 3, "en"),
        (EntityKind.DATA_PROVIDER, 7, "Operator"),
        (EntityKind.SPATIAL_RESOLUTION, 5, "District"),
        (EntityKind.TEMPORAL_RESOLUTION, 4, "Day"),
    ]
    assert setup.excluded == frozenset()


def test_manifest_ids_fill_the_body_without_touching_the_config() -> None:
    item = spatial("District")
    setup, problems = build(
        {"spatial_resolutions": [item]}, ids={"spatial_resolutions": {"District": 2}}
    )
    assert problems == []
    [entity] = setup.entities
    assert entity.id == 2 and entity.body["srid"] == 2 and entity.body["label"] == "District"
    assert "srid" not in item  # the config read stays as it was
    assert setup.spatial["District"] == SpatialResolution(2, "District", None, None)


def test_a_language_is_labelled_by_its_code_and_its_id_may_be_keyed_by_name() -> None:
    config = {"languages": [{"code": "en", "name": "English"}, {"code": "fr", "name": "French"}]}
    setup, problems = build(config, ids={"languages": {"English": 1, "fr": 2}})
    assert problems == []
    assert ids_of(setup, EntityKind.LANGUAGE) == {"en": 1, "fr": 2}


def test_a_language_without_a_code_is_labelled_by_its_name() -> None:
    setup, problems = build({"languages": [{"name": "Kreyòl", "lid": 4}]})
    assert problems == []
    assert ids_of(setup, EntityKind.LANGUAGE) == {"Kreyòl": 4}


def test_categories_and_indicators_are_labelled_and_identified_by_their_own_ids() -> None:
    config = {
        "categories": [{"category_id": "residents", "type": "single_location"}],
        "indicators": [{"indicator_id": "residents.count", "category_id": "residents"}],
    }
    setup, problems = build(config)
    assert problems == []
    assert ids_of(setup, EntityKind.CATEGORY) == {"residents": "residents"}
    assert ids_of(setup, EntityKind.INDICATOR) == {"residents.count": "residents.count"}


def test_a_spatial_resolution_without_an_id_is_excluded_and_reported() -> None:
    config = {"spatial_resolutions": [spatial("Region", srid=1), spatial("District", 2)]}
    setup, problems = build(config)
    assert problems == [
        ("config@spatial_resolutions.1", f"spatial resolution 'District' {NO_SRID}")
    ]
    assert setup.excluded == {(EntityKind.SPATIAL_RESOLUTION, "District")}
    assert list(setup.spatial) == ["Region"]


def test_a_temporal_resolution_without_an_id_says_the_backend_never_assigns_one() -> None:
    setup, problems = build({"temporal_resolutions": [temporal("Month", "months", "%Y-%m")]})
    assert problems == [
        (
            "config@temporal_resolutions.0",
            "temporal resolution 'Month' has no trid: set it in the config or under "
            "ids.temporal_resolutions in the manifest (the backend never assigns one)",
        )
    ]
    assert setup.temporal == {}
    assert setup.excluded == {(EntityKind.TEMPORAL_RESOLUTION, "Month")}


def test_an_id_that_differs_between_config_and_manifest_drops_the_entity() -> None:
    config = {"data_providers": [{"name": "Operator", "dpid": 3}]}
    setup, problems = build(config, ids={"data_providers": {"Operator": 5}})
    assert problems == [
        (
            "config@data_providers.0",
            "data provider 'Operator' has dpid 3 in the config but 5 in ids.data_providers",
        )
    ]
    assert setup.entities == ()


def test_the_same_id_in_config_and_manifest_is_no_conflict() -> None:
    config = {"spatial_resolutions": [spatial("District", srid=2)]}
    setup, problems = build(config, ids={"spatial_resolutions": {"District": 2}})
    assert problems == []
    assert setup.spatial["District"].srid == 2


def test_manifest_ids_for_labels_the_config_lacks_name_the_known_ones() -> None:
    config = {"spatial_resolutions": [spatial("Region", srid=1), spatial("District", srid=2)]}
    _, problems = build(config, ids={"spatial_resolutions": {"Province": 3}})
    assert problems == [
        (
            "ids@ids.spatial_resolutions.Province",
            "ids.spatial_resolutions names 'Province', which is not in the config "
            "(known: District, Region)",
        )
    ]


def test_manifest_ids_for_a_kind_the_config_has_none_of_know_none() -> None:
    _, problems = build({"languages": []}, ids={"languages": {"en": 1}})
    assert problems == [
        (
            "ids@ids.languages.en",
            "ids.languages names 'en', which is not in the config (known: none)",
        )
    ]


def test_a_duplicate_label_is_reported_at_the_second_and_the_first_is_kept() -> None:
    config = {
        "spatial_resolutions": [spatial("District", 1, srid=1), spatial("District", 2, srid=4)]
    }
    setup, problems = build(config)
    assert problems == [("config@spatial_resolutions.1", "duplicate spatial resolution 'District'")]
    assert setup.spatial["District"].srid == 1


def test_two_entities_with_one_id_are_reported_with_the_first_holder() -> None:
    config = {
        "languages": [
            {"code": "en", "name": "English", "lid": 1},
            {"code": "fr", "name": "French", "lid": 1},
        ]
    }
    setup, problems = build(config)
    assert problems == [("config@languages.1", "language 'fr' has the same lid 1 as 'en'")]
    assert ids_of(setup, EntityKind.LANGUAGE) == {"en": 1}


def test_items_that_are_not_mappings_or_have_no_label_are_left_to_the_schema() -> None:
    config = {
        "spatial_resolutions": ["District", {"index": 1, "srid": 9}, spatial("Region", srid=1)],
        "temporal_resolutions": {"label": "Month"},  # not a list: nothing is read
    }
    setup, problems = build(config)
    assert problems == []
    assert ids_of(setup, EntityKind.SPATIAL_RESOLUTION) == {"Region": 1}
    assert setup.temporal == {}


# --- categories and indicators ---------------------------------------------------------


def test_indicators_join_their_category_in_config_order() -> None:
    config = {
        "categories": [
            {"category_id": "movements", "type": "flow"},
            {"category_id": "residents", "type": "single_location"},
        ],
        "indicators": [
            {"indicator_id": "residents.b", "category_id": "residents"},
            {"indicator_id": "movements.a", "category_id": "movements"},
            {"indicator_id": "residents.a", "category_id": "residents"},
        ],
    }
    setup, problems = build(config)
    assert problems == []
    assert setup.categories == {
        "movements": Category("movements", "flow", ("movements.a",)),
        "residents": Category("residents", "single_location", ("residents.b", "residents.a")),
    }
    assert setup.indicator_category("residents.a") == "residents"


def test_an_indicator_of_an_unknown_category_is_reported_at_its_category_id() -> None:
    config = {
        "categories": [{"category_id": "residents", "type": "single_location"}],
        "indicators": [
            {"indicator_id": "residents.a", "category_id": "residents"},
            {"indicator_id": "visitors.a", "category_id": "visitors"},
        ],
    }
    setup, problems = build(config)
    assert problems == [
        (
            "config@indicators.1.category_id",
            "indicator 'visitors.a' names category 'visitors', which is not in the config",
        )
    ]
    assert setup.categories["residents"].indicators == ("residents.a",)


def test_a_category_of_an_unknown_type_is_excluded_silently() -> None:
    config = {
        "categories": [
            {"category_id": "areas", "type": "area"},
            {"category_id": "movements", "type": "flow"},
        ],
        "indicators": [{"indicator_id": "areas.size", "category_id": "areas"}],
    }
    setup, problems = build(config)
    assert problems == []  # the schema names the type
    assert list(setup.categories) == ["movements"]
    assert setup.excluded == {(EntityKind.CATEGORY, "areas")}


# --- temporal resolutions --------------------------------------------------------------


def test_a_temporal_resolution_reads_unit_step_and_format() -> None:
    config = {
        "temporal_resolutions": [
            temporal("Fortnight", "weeks", "%Gw%V", trid=5, relativedelta_num=2),
            temporal("Day", "days", None, trid=4),
        ]
    }
    setup, problems = build(config)
    assert problems == []
    assert setup.temporal == {
        "Fortnight": TemporalResolution(5, "Fortnight", "weeks", 2, "%Gw%V"),
        "Day": TemporalResolution(4, "Day", "days", 1, "%Y-%m-%d"),  # the default format
    }


@pytest.mark.parametrize(
    ("unit", "date_format"),
    [
        ("years", "%Y"),
        ("months", "%Y-%m"),
        ("weeks", "%Gw%V"),
        ("weeks", "%Y-%m-%d"),
        ("days", "%Y-%m-%d"),
        ("days", "%d/%m/%Y"),
        ("hours", "%Y-%m-%d %H:00"),
    ],
)
def test_a_date_format_that_tells_units_apart_is_accepted(unit: str, date_format: str) -> None:
    _, problems = build({"temporal_resolutions": [temporal("T", unit, date_format, trid=1)]})
    assert problems == []


@pytest.mark.parametrize(
    ("unit", "date_format", "what"),
    [("months", "%Y", "month"), ("weeks", "%Y-%m", "week"), ("days", "%Y-%m", "day")],
)
def test_a_date_format_that_would_collide_is_reported_at_the_format(
    unit: str, date_format: str, what: str
) -> None:
    config = {
        "temporal_resolutions": [
            temporal("Day", "days", "%Y-%m-%d", trid=4),
            temporal("Coarse", unit, date_format, trid=9),
        ]
    }
    setup, problems = build(config)
    assert problems == [
        (
            "config@temporal_resolutions.1.date_format",
            f"date_format '{date_format}' of 'Coarse' does not identify a {what}: "
            "dates would collide",
        )
    ]
    assert "Coarse" in setup.temporal  # reported, still known to the datasets naming it


def test_an_unknown_unit_is_left_to_the_schema() -> None:
    _, problems = build({"temporal_resolutions": [temporal("T", "fortnights", "%Y", trid=1)]})
    assert problems == []


# --- spatial resolutions and their boundaries ------------------------------------------


def test_the_unit_property_is_inferred_from_the_one_unique_code_like_property() -> None:
    boundaries = topology(
        {"ADM1_PCODE": "R1", "ADM2_PCODE": "R1-1", "ADM2_EN": "North"},
        {"ADM1_PCODE": "R1", "ADM2_PCODE": "R1-2", "ADM2_EN": "South"},
    )
    config = {"spatial_resolutions": [spatial("District", srid=2, boundaries=boundaries)]}
    setup, problems = build(config)
    assert problems == []  # ADM1_PCODE repeats, ADM2_EN is not code-like
    assert setup.spatial["District"] == SpatialResolution(
        2, "District", "ADM2_PCODE", frozenset({"R1-1", "R1-2"})
    )


def test_geojson_features_give_unit_codes_too() -> None:
    boundaries = feature_collection({"id": "a", "name": "A"}, {"id": "b", "name": "B"})
    config = {"spatial_resolutions": [spatial("Zone", srid=3, boundaries=boundaries)]}
    setup, problems = build(config)
    assert problems == []
    assert setup.spatial["Zone"].unit_property == "id"
    assert setup.spatial["Zone"].unit_codes == {"a", "b"}


def test_two_unique_code_like_properties_ask_for_unit_properties() -> None:
    boundaries = topology({"PCODE": "1", "zone_id": "a"}, {"PCODE": "2", "zone_id": "b"})
    config = {
        "spatial_resolutions": [
            spatial("Region", 1, srid=1),
            spatial("Zone", 2, srid=2, boundaries=boundaries),
        ]
    }
    setup, problems = build(config)
    assert problems == [
        (
            "config@spatial_resolutions.1.boundaries",
            "cannot tell which boundary property holds the unit codes of 'Zone' (unique "
            "code-like properties: PCODE, zone_id); set unit_properties.Zone in the manifest",
        )
    ]
    assert setup.spatial["Zone"] == SpatialResolution(2, "Zone", None, None)


def test_no_unique_code_like_property_says_none() -> None:
    boundaries = topology({"PCODE": "1", "name": "a"}, {"PCODE": "1", "name": "b"})
    config = {"spatial_resolutions": [spatial("Zone", srid=2, boundaries=boundaries)]}
    _, problems = build(config)
    assert [m for _, m in problems] == [
        "cannot tell which boundary property holds the unit codes of 'Zone' (unique "
        "code-like properties: none); set unit_properties.Zone in the manifest"
    ]


def test_an_explicit_unit_property_wins_and_may_hold_integer_codes() -> None:
    boundaries = topology(
        {"PCODE": "1", "zone_id": "a", "num": 10}, {"PCODE": "2", "zone_id": "b", "num": 20}
    )
    config = {"spatial_resolutions": [spatial("Zone", srid=2, boundaries=boundaries)]}
    setup, problems = build(config, unit_properties={"Zone": "num"})
    assert problems == []
    assert setup.spatial["Zone"] == SpatialResolution(2, "Zone", "num", frozenset({"10", "20"}))


def test_an_explicit_unit_property_missing_somewhere_is_reported_at_its_key() -> None:
    boundaries = topology({"ADM3_PCODE": "a"}, {"ADM2_PCODE": "b"})
    config = {"spatial_resolutions": [spatial("Section", srid=3, boundaries=boundaries)]}
    setup, problems = build(config, unit_properties={"Section": "ADM3_PCODE"})
    assert problems == [
        (
            "unit_key@unit_properties.Section",
            "boundary property 'ADM3_PCODE' is missing from some geometries of 'Section'",
        )
    ]
    assert setup.spatial["Section"] == SpatialResolution(3, "Section", "ADM3_PCODE", None)


def test_an_explicit_unit_property_without_boundaries_has_no_codes() -> None:
    config = {"spatial_resolutions": [spatial("District", srid=2)]}
    setup, problems = build(config, unit_properties={"District": "ADM2_PCODE"})
    assert problems == []
    assert setup.spatial["District"] == SpatialResolution(2, "District", "ADM2_PCODE", None)


@pytest.mark.parametrize(
    "boundaries",
    [
        {},
        {"type": "GeometryCollection", "geometries": [{"properties": {"id": "a"}}]},
        {"type": "Topology", "objects": {"admin": {"geometries": [{"arcs": []}]}}},
        {"type": "FeatureCollection", "features": [{"properties": None}]},
    ],
    ids=["empty", "not-topojson-or-geojson", "no-properties", "null-properties"],
)
def test_boundaries_without_properties_are_reported_at_the_boundaries(
    boundaries: dict[str, Any],
) -> None:
    config = {"spatial_resolutions": [spatial("District", srid=2, boundaries=boundaries)]}
    setup, problems = build(config)
    assert problems == [
        (
            "config@spatial_resolutions.0.boundaries",
            "boundaries of 'District' hold no geometries with properties (expected a "
            "TopoJSON Topology or a GeoJSON FeatureCollection)",
        )
    ]
    assert setup.spatial["District"].unit_codes is None


def test_unit_properties_for_a_resolution_the_config_lacks_are_reported_at_the_key() -> None:
    config = {"spatial_resolutions": [spatial("District", srid=2)]}
    _, problems = build(config, unit_properties={"Province": "PCODE"})
    assert problems == [
        ("unit_key@unit_properties.Province", "unknown spatial resolution 'Province'")
    ]


def test_problems_land_on_lines_and_columns_of_the_config_text() -> None:
    text = (
        "{\n"
        '  "spatial_resolutions": [\n'
        '    {"label": "Region", "index": 1, "srid": 1},\n'
        '    {"label": "Region", "index": 2, "srid": 2}\n'
        "  ],\n"
        '  "temporal_resolutions": [\n'
        '    {"label": "Week", "index": 1, "trid": 3, "relativedelta_unit": "weeks",\n'
        '     "relativedelta_num": 1, "date_format": "%Y-%m"}\n'
        "  ]\n"
        "}\n"
    )
    locate = JsonPositions("config.json", text).position
    builder = ConfigBuilder(json.loads(text), locate, {}, at("ids"), {}, at("unit_key"))
    builder.build()
    assert [str(p) for p in builder.problems] == [
        "config.json:4:5: duplicate spatial resolution 'Region'",
        "config.json:8:45: date_format '%Y-%m' of 'Week' does not identify a week: "
        "dates would collide",
    ]


def test_the_example_config_builds_cleanly_with_the_example_ids() -> None:
    ids = {
        "spatial_resolutions": {"Region": 1, "District": 2},
        "temporal_resolutions": {"Month": 2, "Day": 4},
    }
    setup, problems = build(EXAMPLE, ids=ids)
    assert problems == []
    region, district = setup.spatial["Region"], setup.spatial["District"]
    assert (region.unit_property, sorted(region.unit_codes or ())) == (
        "ADM1_PCODE",
        ["EX01", "EX02", "EX03"],
    )
    assert district.unit_property == "ADM2_PCODE" and len(district.unit_codes or ()) == 8
    assert {c.category_id: len(c.indicators) for c in setup.categories.values()} == {
        "residents": 3,
        "movements": 2,
    }


# --- is_unique_code and boundary_properties ---------------------------------------------


@pytest.mark.parametrize(
    ("values", "unique"),
    [
        (["a", "b", "c"], True),
        (["a", "b", "a"], False),
        (["a", "", "c"], False),
        (["a", None, "c"], False),
        ([1, 2, 3], False),  # only text codes are inferred
    ],
)
def test_is_unique_code(values: list[Any], unique: bool) -> None:
    properties = [{"code": v} if v is not None else {} for v in values]
    assert is_unique_code(properties, "code") is unique


def test_is_unique_code_needs_the_property_in_every_geometry() -> None:
    assert not is_unique_code([{"code": "a"}, {"other": "b"}], "code")


def test_boundary_properties_collect_every_topojson_object_in_order() -> None:
    boundaries = {
        "type": "Topology",
        "objects": {
            "first": {
                "type": "GeometryCollection",
                "geometries": [{"properties": {"n": 1}}, {"properties": {"n": 2}}],
            },
            "single": {"type": "Polygon", "properties": {"n": 3}},  # a lone geometry
            "bare": {"type": "Polygon"},
            "junk": "not a mapping",
        },
    }
    assert boundary_properties(boundaries) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_boundary_properties_skip_features_without_a_properties_mapping() -> None:
    boundaries = feature_collection({"n": 1}, None, ["n"], {"n": 2})
    boundaries["features"].append("not a feature")
    assert boundary_properties(boundaries) == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    "boundaries",
    [
        {"type": "Topology", "objects": ["not", "a", "mapping"]},
        {"type": "Topology"},
        {"type": "FeatureCollection", "features": {"not": "a list"}},
        {"type": "Feature", "properties": {"n": 1}},
        {"objects": {"a": {"properties": {"n": 1}}}},
    ],
)
def test_boundary_properties_of_other_shapes_are_none(boundaries: dict[str, Any]) -> None:
    assert boundary_properties(boundaries) == []


# --- properties --------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=4),
        st.sampled_from(["Topology", "FeatureCollection"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["type", "objects", "geometries", "features", "properties", "id"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(deadline=None)
@given(boundaries=st.dictionaries(st.sampled_from(["type", "objects", "features"]), json_values))
def test_boundary_properties_of_anything_are_mappings_and_never_raise(
    boundaries: dict[str, Any],
) -> None:
    assert all(isinstance(p, Mapping) for p in boundary_properties(boundaries))


@settings(deadline=None)
@given(
    codes=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=8, unique=True),
    data=st.data(),
)
def test_distinct_codes_are_unique_until_one_repeats(codes: list[str], data: st.DataObject) -> None:
    properties = [{"code": c} for c in codes]
    assert is_unique_code(properties, "code")
    repeated = data.draw(st.sampled_from(codes))
    assert not is_unique_code([*properties, {"code": repeated}], "code")


@settings(deadline=None)
@given(
    ids=st.dictionaries(
        st.sampled_from([k.value for k in EntityKind]),
        st.dictionaries(
            st.sampled_from(["en", "fr", "Region", "District", "Month", "x"]),
            st.integers(1, 4),
            max_size=4,
        ),
        max_size=6,
    )
)
def test_any_manifest_ids_over_the_example_give_problems_never_exceptions(
    ids: dict[str, dict[str, int]],
) -> None:
    setup, problems = build(EXAMPLE, ids=ids)
    spatial_ids = ids.get("spatial_resolutions", {})
    # Every resolution either got the id asked for or is accounted for by a problem.
    for label in ("Region", "District"):
        if label in setup.spatial:
            assert setup.spatial[label].srid == spatial_ids[label]
        else:
            assert any(f"'{label}'" in message for _, message in problems)
    for _, message in problems:
        assert message and "\n" not in message


def test_unit_code_properties_are_those_unique_per_geometry() -> None:
    features = [{"type": "Feature", "properties": {"pcod": code, "region": "North", "n": i}}
                for i, code in enumerate(("D1", "D2"))]  # fmt: skip
    boundaries = {"type": "FeatureCollection", "features": features}
    assert unit_code_properties(boundaries) == {"pcod": {"D1", "D2"}}  # n: not text
    assert unit_code_properties(None) == {} == unit_code_properties({"type": "Topology"})
