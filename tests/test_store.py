"""The embedded backend's model of the FlowKit-UI service (`loader/backends/store.py`),
called directly on a SQLite file: every expectation comes from
reference/backend-contract.md and the observations behind it (observed-behaviour.json).

Covered: the value objects (`Reply`, `failure`, `Principal`); `/setup` writes and reads
(POST replaces all config and keeps datasets, ids required without quirks, the 500s and
the auto-increment numbering with quirks, PATCH /setup's wrong id matching); config
entities (201 with the object as stored, 303 with the existing one, translations kept
only for existing languages, decimal fields and bins, PATCH/DELETE answers, invalid
bodies as 422 or as upstream's plain 500); visibility through a `Principal`'s
permissions and scope mappings (grants, 303 on a repeat, a missing mdid, the `admin`
mapping); datasets (201/303 by identity, the accepted `dt` forms, DECIMAL(20,9) values
and their rounding, the INT min/max columns, NaN, PATCH's new mdid, DELETE, a client
mdid, an ambiguous identity); /query (ranges in resolution steps, flows, mdids_only,
refusals), /csv, /timerange and /latest_date; `parse_query` on good and bad bodies and
the date and value helpers.

The duplicate identity that concurrent creates leave upstream (Hazard 5) is written into
the file directly, as two racing inserts would leave it: racing threads would make the
test depend on timing.
"""

from __future__ import annotations

import copy
import math
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from loader.backends.store import (
    INTERNAL_ERROR,
    InvalidBody,
    Principal,
    Reply,
    Store,
    _bin,
    _decimal_text,
    _int_round,
    _parse_dt,
    _parse_start,
    failure,
    parse_query,
)
from loader.model import EntityKind

K = EntityKind
UNKNOWN_ID_COLUMN = "Something went wrong: (1054, \"Unknown column 'id' in 'SET'\")"

LANGUAGES = [
    {"lid": 1, "code": "en", "name": "English", "flag": "GB", "default": True},
    {"lid": 2, "code": "fr", "name": "French", "flag": "FR", "default": False},
]
PROVIDER = {"dpid": 1, "name": "Examplia Mobile", "logo": None, "url": "https://example.org"}
RESIDENTS = {
    "category_id": "residents",
    "type": "single_location",
    "order": 1,
    "flowgeek_url": None,
    "label": "Residents",
    "description": "People living in an area",
    "label_fr": "Résidents",
}
RELOCATIONS = {"category_id": "relocations", "type": "flow", "order": 2, "label": "Relocations"}
CUSTOM = {"category_id": "custom", "type": "single_location", "order": 3, "label": "Custom"}
INDICATORS = [
    {"indicator_id": "residents.residents", "category_id": "residents", "order": 1},
    {"indicator_id": "residents.abnormality", "category_id": "residents", "order": 2},
    {"indicator_id": "relocations.relocations", "category_id": "relocations", "order": 1},
    {"indicator_id": "custom.custom", "category_id": "custom", "order": 1},
]
COMMUNES = {"srid": 3, "label": "Communal section", "index": 3, "boundaries": {"type": "Topology"}}
MONTH = {
    "trid": 2,
    "label": "Month",
    "index": 1,
    "relativedelta_unit": "months",
    "relativedelta_num": 1,
    "date_format": "%Y-%m",
    "default_selected": 12,
}
DAY = {
    "trid": 4,
    "label": "Day",
    "index": 3,
    "relativedelta_unit": "days",
    "relativedelta_num": 1,
    "date_format": "%Y-%m-%d",
    "default_selected": 7,
}


def config(**lists: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A Config body: every list the service requires, empty unless given."""
    body: dict[str, list[dict[str, Any]]] = {kind.value: [] for kind in EntityKind}
    body.update(lists)
    return copy.deepcopy(body)


FULL_CONFIG = config(
    languages=LANGUAGES,
    data_providers=[PROVIDER],
    categories=[RESIDENTS, RELOCATIONS, CUSTOM],
    indicators=INDICATORS,
    spatial_resolutions=[COMMUNES],
    temporal_resolutions=[MONTH, DAY],
)

ADMIN = Principal.full()
READER = Principal(frozenset({"read:free_data"}), frozenset({"read:free_data"}), "dev-reader")
NOBODY = Principal(frozenset(), frozenset())


def dataset(
    values: dict[Any, Any] | None = None,
    *,
    dt: Any = "2020-02-01 00:00:00",
    category: str = "residents",
    indicator: str = "residents.residents",
    srid: Any = 3,
    trid: Any = 2,
    data_type: str = "single_location",
    **metadata: Any,
) -> dict[str, Any]:
    """A Dataset body; `values` maps a unit (or an (origin, destination) pair) to data."""
    if values is None:
        values = {"HT0111-01": 10, "HT0111-02": 20}
    inputs = [
        {"spatial_unit_ids": list(unit) if isinstance(unit, tuple) else [unit], "data": value}
        for unit, value in values.items()
    ]
    return {
        "metadata": {
            "revision": "r1",
            "category_id": category,
            "indicator_id": indicator,
            "srid": srid,
            "trid": trid,
            "dt": dt,
            "date_added": "2024-01-01",
            **metadata,
        },
        "data_type": data_type,
        "data_input": inputs,
    }


def post(store: Store, body: dict[str, Any], *, replace: bool = False) -> Reply:
    """POST /data (PATCH /data with `replace`) of a valid body."""
    return store.write_dataset(store.parse_dataset(body), replace=replace)


def query_body(
    start: str = "2020-02",
    duration: int = 1,
    *,
    category: str = "residents",
    indicator: str = "residents.residents",
    srid: int = 3,
    trid: int = 2,
    **more: Any,
) -> dict[str, Any]:
    return {
        "category_id": category,
        "indicator_id": indicator,
        "srid": srid,
        "trid": trid,
        "start_date": start,
        "duration": duration,
        **more,
    }


def mdids(store: Store, principal: Principal = ADMIN, **query: Any) -> list[str]:
    reply = store.query(query_body(mdids_only=True, **query), principal)
    assert reply.status == 200, reply
    return list(reply.body["mdids"])


def ids(reply: Reply, kind: EntityKind) -> list[Any]:
    assert reply.status == 200, reply
    return [entity[kind.id_field] for entity in reply.body[kind.value]]


def duplicate_identity(path: str, mdid: int) -> int:
    """Leave a second dataset of the same identity in the file, as two concurrent
    upstream creates do (Hazard 5); answer its mdid."""
    db = sqlite3.connect(path)
    with db:
        cursor = db.execute(
            "INSERT INTO metadata(revision, category_id, indicator_id, srid, trid, dt, "
            "date_added, min_value, max_value, data_type) SELECT revision, category_id, "
            "indicator_id, srid, trid, dt, date_added, min_value, max_value, data_type "
            "FROM metadata WHERE mdid = ?",
            (mdid,),
        )
        new = int(cursor.lastrowid or 0)
        db.execute("UPDATE metadata SET mdid = id WHERE id = ?", (new,))
        db.execute(
            "INSERT INTO data(row_id, count, units, destinations, nanos) "
            "SELECT ?, count, units, destinations, nanos FROM data WHERE row_id = ?",
            (new, mdid),
        )
        db.execute("INSERT INTO scope_mapping(scope, mdid) VALUES ('admin', ?)", (new,))
    db.close()
    return new


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(str(tmp_path / "store.db"))
    yield opened
    opened.close()


@pytest.fixture
def quirky(tmp_path: Path) -> Iterator[Store]:
    opened = Store(str(tmp_path / "quirky.db"), quirks=True)
    yield opened
    opened.close()


@pytest.fixture
def configured(store: Store) -> Store:
    assert store.post_setup(FULL_CONFIG) == Reply(204)
    return store


# ---------------------------------------------------------------------------------------
# Value objects


def test_failure_is_a_json_500_and_a_reply_defaults_to_no_json_body() -> None:
    assert failure("tuple index out of range") == Reply(
        500, "Something went wrong: tuple index out of range", plain=False
    )
    reply = Reply(204)
    assert (reply.status, reply.body, reply.plain) == (204, None, False)


def test_full_principal_carries_every_scope_and_the_admin_permission() -> None:
    full = Principal.full()
    assert full.scopes == {"admin", "write:data", "read:free_data", "read:premium_data"}
    assert full.permissions == {"admin"}
    assert full.subject == "local-admin"
    assert Principal(frozenset(), frozenset()).subject == "local"


# ---------------------------------------------------------------------------------------
# /setup


def test_empty_store_answers_setup_with_six_empty_lists(store: Store) -> None:
    assert store.get_setup() == Reply(
        200,
        {
            "languages": [],
            "data_providers": [],
            "categories": [],
            "indicators": [],
            "temporal_resolutions": [],
            "spatial_resolutions": [],
        },
    )


def test_setup_reads_back_only_languages_and_data_providers(configured: Store) -> None:
    body = configured.get_setup().body
    assert body["languages"] == LANGUAGES
    assert body["data_providers"] == [{**PROVIDER, "translation": None}]
    for name in ("categories", "indicators", "temporal_resolutions", "spatial_resolutions"):
        assert body[name] == []


def test_setup_without_an_id_is_refused_422_and_writes_nothing(store: Store) -> None:
    no_srid = {k: v for k, v in COMMUNES.items() if k != "srid"}
    body = config(languages=LANGUAGES, spatial_resolutions=[no_srid])
    assert store.post_setup(body) == Reply(422, "spatial resolution: srid is required")
    assert store.get_setup().body["languages"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "config must be an object"),
        ({k: v for k, v in config().items() if k != "indicators"},
         "config: field required: indicators"),
        (config(categories=[{"category_id": "x", "type": "grid"}]), "unknown category type 'grid'"),
    ],
)  # fmt: skip
def test_invalid_setup_bodies_are_422_with_a_message(store: Store, body: Any, message: str) -> None:
    assert store.post_setup(body) == Reply(422, message)


def test_post_setup_replaces_the_config_and_datasets_survive_it(configured: Store) -> None:
    assert post(configured, dataset()) == Reply(201, 1)
    assert configured.delete_setup() == Reply(204)
    assert configured.get_setup().body["languages"] == []
    # Orphaned: the config is gone, so the category is unknown (observed).
    assert configured.query(query_body(), ADMIN) == Reply(404, "Category not found")
    assert configured.post_setup(FULL_CONFIG) == Reply(204)
    assert mdids(configured) == ["1"]
    # A second POST /setup replaces: a provider left out is gone.
    assert configured.post_setup(config(languages=LANGUAGES)) == Reply(204)
    assert configured.get_setup().body["data_providers"] == []


def test_duplicate_trid_fails_every_temporal_row_but_keeps_the_rows_before(store: Store) -> None:
    body = config(languages=LANGUAGES, temporal_resolutions=[MONTH, {**MONTH, "label": "Again"}])
    assert store.post_setup(body) == failure("(1062, \"Duplicate entry '2' for key 'PRIMARY'\")")
    assert store.get_setup().body["languages"] == LANGUAGES  # not transactional
    assert store.patch_entity(K.TEMPORAL_RESOLUTION, 2, MONTH) == Reply(
        404, "Could not update resource - not found"
    )


def test_quirks_post_setup_answers_500_although_every_row_is_written(quirky: Store) -> None:
    assert quirky.post_setup(FULL_CONFIG) == Reply(500, UNKNOWN_ID_COLUMN)
    assert quirky.get_setup().body["languages"] == LANGUAGES
    assert quirky.post_entity(K.TEMPORAL_RESOLUTION, DAY) == Reply(
        303, {**DAY, "description": None, "translation": None}
    )


def test_quirks_post_setup_without_trid_writes_all_but_temporal_resolutions(
    quirky: Store,
) -> None:
    no_trid = {k: v for k, v in MONTH.items() if k != "trid"}
    body = config(languages=LANGUAGES, categories=[RELOCATIONS], temporal_resolutions=[no_trid])
    assert quirky.post_setup(body) == failure("(1048, \"Column 'trid' cannot be null\")")
    assert quirky.get_setup().body["languages"] == LANGUAGES
    assert quirky.post_entity(K.CATEGORY, RELOCATIONS).status == 303
    assert quirky.patch_entity(K.TEMPORAL_RESOLUTION, 2, MONTH).status == 404


def test_quirks_reposted_setup_numbers_entities_without_ids_on(quirky: Store) -> None:
    languages = [{k: v for k, v in language.items() if k != "lid"} for language in LANGUAGES]
    body = config(languages=languages)
    quirky.post_setup(body)
    assert [lang["lid"] for lang in quirky.get_setup().body["languages"]] == [1, 2]
    quirky.post_setup(body)  # observed: lid [1, 2, 3] then [4, 5, 6]
    assert [lang["lid"] for lang in quirky.get_setup().body["languages"]] == [3, 4]


def test_quirks_auto_ids_count_explicit_ids_too(quirky: Store) -> None:
    body = config(languages=[{**LANGUAGES[0], "lid": 10}, {"code": "fr", "name": "French"}])
    quirky.post_setup(body)
    assert [lang["lid"] for lang in quirky.get_setup().body["languages"]] == [10, 2]


def test_patch_setup_is_refused_without_quirks(store: Store) -> None:
    assert store.patch_setup(FULL_CONFIG) == Reply(
        501, "PATCH /setup is not supported: use POST /setup with ids"
    )


def test_quirks_patch_setup_matches_only_the_first_id_and_loses_it(quirky: Store) -> None:
    quirky.post_setup(FULL_CONFIG)
    # Deletes lid 1 and trid 2 only ("2', '4" compares as 2), then the INSERT of the
    # temporal resolutions fails on trid 4, still present: trid 2 is lost.
    assert quirky.patch_setup(FULL_CONFIG) == failure(
        "(1062, \"Duplicate entry '4' for key 'PRIMARY'\")"
    )
    assert [lang["lid"] for lang in quirky.get_setup().body["languages"]] == [2, 1, 2]
    assert quirky.patch_entity(K.TEMPORAL_RESOLUTION, 2, MONTH).status == 404
    assert quirky.patch_entity(K.TEMPORAL_RESOLUTION, 4, DAY) == Reply(204)


def test_reopening_the_file_keeps_config_and_data(configured: Store) -> None:
    post(configured, dataset())
    again = Store(configured.path)
    try:
        assert again.get_setup().body["languages"] == LANGUAGES
        assert again.value_count() == 2
        assert mdids(again) == ["1"]
    finally:
        again.close()


# ---------------------------------------------------------------------------------------
# Config entities


@pytest.fixture
def with_languages(store: Store) -> Store:
    assert store.post_setup(config(languages=LANGUAGES)) == Reply(204)
    return store


def test_created_category_is_answered_as_stored(with_languages: Store) -> None:
    body = {**RESIDENTS, "label_de": "Einwohner", "label_en": "Residents!", "colour": "red"}
    del body["flowgeek_url"]
    assert with_languages.post_entity(K.CATEGORY, body) == Reply(
        201,
        {
            "category_id": "residents",
            "type": "single_location",
            "order": 1,
            "flowgeek_url": None,  # absent fields read as null
            "label": "Residents",
            "description": "People living in an area",
            "label_fr": "Résidents",  # de does not exist, en is the default: both dropped
        },
    )


def test_entity_without_translations_answers_translation_null(store: Store) -> None:
    assert store.post_entity(K.DATA_PROVIDER, {"dpid": 7, "name": "Op"}) == Reply(
        201, {"dpid": 7, "name": "Op", "logo": None, "url": None, "translation": None}
    )


def test_indicator_decimal_fields_are_floats_and_bins_keep_min_max_width(
    with_languages: Store,
) -> None:
    with_languages.post_entity(K.CATEGORY, RESIDENTS)
    body = {
        **INDICATORS[0],
        "min_value": 0,
        "max_value": "250",
        "num_bins": 5,
        "bins": [{"min": 0, "max": "10", "width": "10", "colour": "red"}, "raw"],
    }
    stored = with_languages.post_entity(K.INDICATOR, body).body
    assert (stored["min_value"], stored["max_value"], stored["num_bins"]) == (0.0, 250.0, 5.0)
    assert all(type(stored[name]) is float for name in ("min_value", "max_value", "num_bins"))
    assert stored["bins"] == [{"min": 0.0, "max": 10.0, "width": "10"}, "raw"]
    assert stored["decimals"] is None and stored["translation"] is None
    assert _bin({"min": None, "max": 3, "width": None, "x": 1}) == {
        "min": None,
        "max": 3.0,
        "width": None,
    }
    assert _bin(4) == 4


def test_creating_an_existing_id_answers_303_with_the_object_unchanged(store: Store) -> None:
    first = store.post_entity(K.CATEGORY, RELOCATIONS)
    assert first.status == 201
    assert store.post_entity(K.CATEGORY, {**RELOCATIONS, "label": "Changed"}) == Reply(
        303, first.body
    )
    assert first.body["label"] == "Relocations"


def test_indicator_of_a_missing_category_is_404(store: Store) -> None:
    assert store.post_entity(K.INDICATOR, {"indicator_id": "x.y", "category_id": "x"}) == Reply(
        404, "Category 'x' not found"
    )


def test_entity_without_its_id_is_422_but_gets_an_auto_id_with_quirks(
    store: Store, quirky: Store
) -> None:
    body = {k: v for k, v in COMMUNES.items() if k != "srid"}
    assert store.post_entity(K.SPATIAL_RESOLUTION, body) == Reply(422, "srid is required")
    reply = quirky.post_entity(K.SPATIAL_RESOLUTION, body)
    assert reply.status == 201
    assert reply.body["srid"] == 1


def test_quirks_temporal_resolution_create_answers_500_yet_creates_it(quirky: Store) -> None:
    assert quirky.post_entity(K.TEMPORAL_RESOLUTION, MONTH) == Reply(500, UNKNOWN_ID_COLUMN)
    second = quirky.post_entity(K.TEMPORAL_RESOLUTION, MONTH)
    assert second.status == 303
    assert second.body["trid"] == 2 and second.body["date_format"] == "%Y-%m"


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (K.CATEGORY, "residents", "category must be an object"),
        (K.CATEGORY, {"category_id": "x"}, "category: field required: type"),
        (K.CATEGORY, {"category_id": "x", "type": "grid"}, "unknown category type 'grid'"),
        (K.CATEGORY, {"category_id": 7, "type": "flow"}, "category: category_id must be str"),
        (K.INDICATOR, {"indicator_id": "a.b"}, "indicator: field required: category_id"),
        (K.SPATIAL_RESOLUTION, {"srid": "3", "label": "L", "index": 1},
         "spatial resolution: srid must be int"),
        (K.SPATIAL_RESOLUTION, {"srid": True, "label": "L", "index": 1},
         "spatial resolution: srid must be int"),
        (K.TEMPORAL_RESOLUTION, {k: v for k, v in MONTH.items() if k != "relativedelta_unit"},
         "temporal resolution: field required: relativedelta_unit"),
        (K.LANGUAGE, {"lid": 3}, "language: field required: name"),
    ],
)  # fmt: skip
def test_invalid_entity_bodies_are_422_with_a_message(
    store: Store, kind: EntityKind, body: Any, message: str
) -> None:
    assert store.post_entity(kind, body) == Reply(422, message)


def test_quirks_invalid_bodies_are_a_plain_internal_server_error(quirky: Store) -> None:
    expected = Reply(500, "Internal Server Error", plain=True)
    assert INTERNAL_ERROR == "Internal Server Error"
    assert quirky.post_entity(K.CATEGORY, {"category_id": "x"}) == expected
    assert quirky.patch_entity(K.CATEGORY, "x", []) == expected
    assert quirky.post_setup({"languages": []}) == expected
    assert quirky.query(query_body("2020/02"), ADMIN) == expected
    assert quirky.csv({"srid": 3}, ADMIN) == expected
    with pytest.raises(InvalidBody) as raised:
        quirky.parse_dataset(dataset({"A": "abc"}))
    assert quirky.invalid(raised.value) == expected


def test_patch_entity_replaces_the_whole_stored_object(store: Store) -> None:
    store.post_entity(K.CATEGORY, RELOCATIONS)
    assert store.patch_entity(K.CATEGORY, "relocations", {**RELOCATIONS, "label": "Moves"}) == (
        Reply(204)
    )
    again = store.post_entity(K.CATEGORY, RELOCATIONS)
    assert again.status == 303
    assert again.body["label"] == "Moves"


def test_patch_entity_needs_the_paths_id_and_an_existing_entity(store: Store) -> None:
    store.post_entity(K.CATEGORY, RELOCATIONS)
    assert store.patch_entity(K.CATEGORY, "movements", RELOCATIONS) == Reply(
        400, "Resource's `category_id` 'relocations' doesn't match value movements"
    )
    assert store.patch_entity(K.SPATIAL_RESOLUTION, 3, COMMUNES) == Reply(
        404, "Could not update resource - not found"
    )


def test_delete_is_204_even_when_absent_except_for_indicators(configured: Store) -> None:
    assert configured.delete_entity(K.SPATIAL_RESOLUTION, 99) == Reply(204)
    assert configured.delete_entity(K.INDICATOR, "nope") == Reply(404, "Indicator 'nope' not found")
    assert configured.delete_entity(K.INDICATOR, "residents.abnormality") == Reply(204)
    assert configured.post_entity(K.INDICATOR, INDICATORS[1]).status == 201


# ---------------------------------------------------------------------------------------
# Visibility: a Principal's permissions and scope mappings


def test_config_is_invisible_to_everyone_before_any_dataset(configured: Store) -> None:
    assert configured.list_entities(K.CATEGORY, ADMIN) == Reply(200, {"categories": []})
    assert configured.list_entities(K.TEMPORAL_RESOLUTION, ADMIN).body == {
        "temporal_resolutions": []
    }
    assert configured.get_entity(K.CATEGORY, "residents", ADMIN) == Reply(404, "Category not found")
    assert configured.get_entity(K.INDICATOR, "residents.residents", ADMIN) == Reply(
        404, "Indicator not found"
    )
    assert configured.get_entity(K.SPATIAL_RESOLUTION, 3, ADMIN) == Reply(
        404, "Spatial resolution not found"
    )
    assert configured.get_entity(K.TEMPORAL_RESOLUTION, 2, ADMIN) == Reply(
        404, "Temporal resolution not found"
    )
    assert configured.for_category(K.INDICATOR, "residents", ADMIN) == Reply(
        200, {"indicators": []}
    )


def test_a_new_dataset_is_visible_to_admin_only(configured: Store) -> None:
    post(configured, dataset())
    assert ids(configured.list_entities(K.CATEGORY, ADMIN), K.CATEGORY) == ["residents"]
    assert ids(configured.list_entities(K.INDICATOR, ADMIN), K.INDICATOR) == ["residents.residents"]
    assert ids(configured.list_entities(K.TEMPORAL_RESOLUTION, ADMIN), K.TEMPORAL_RESOLUTION) == [2]
    listed = configured.list_entities(K.SPATIAL_RESOLUTION, ADMIN).body["spatial_resolutions"]
    assert [(e["srid"], e["boundaries"]) for e in listed] == [(3, None)]  # lists drop them
    single = configured.get_entity(K.SPATIAL_RESOLUTION, "3", ADMIN)
    assert single.status == 200 and single.body["boundaries"] == {"type": "Topology"}
    assert configured.get_entity(K.CATEGORY, "residents", ADMIN).body["label_fr"] == "Résidents"
    assert configured.list_entities(K.CATEGORY, READER) == Reply(200, {"categories": []})
    assert configured.query(query_body(), READER) == Reply(404, "Category not found")


def test_visibility_follows_permissions_not_scopes(configured: Store) -> None:
    post(configured, dataset())
    all_scopes_reader = Principal(ADMIN.scopes, frozenset({"read:free_data"}))
    assert configured.list_entities(K.CATEGORY, all_scopes_reader).body == {"categories": []}
    assert configured.list_entities(K.CATEGORY, NOBODY).body == {"categories": []}
    assert configured.query(query_body(), NOBODY) == Reply(404, "Category not found")


def test_a_scope_mapping_grants_reads_and_a_repeat_answers_303(configured: Store) -> None:
    mdid = post(configured, dataset()).body
    # The mapping's id: the dataset's own `admin` mapping is 1 (observed: 4 after three).
    assert configured.post_mapping("read:free_data", mdid) == Reply(201, 2)
    assert configured.post_mapping("read:free_data", mdid) == Reply(303, 2)
    assert configured.query(query_body(), READER) == Reply(
        200,
        {
            "min": 10.0,
            "max": 20.0,
            "data_by_date": {"2020-02": {"HT0111-01": 10.0, "HT0111-02": 20.0}},
            "mdids": None,
        },
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"scope": "read:free_data", "mdid": 4}, ("read:free_data", 4)),
        ({"scope": "read:free_data", "mdid": "4"}, ("read:free_data", 4)),
    ],
)
def test_parse_mapping_takes_an_integer_or_digit_string_mdid(
    body: dict[str, Any], expected: tuple[str, int]
) -> None:
    assert Store.parse_mapping(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "scope mapping: field required: scope"),
        ({"mdid": 4}, "scope mapping: field required: scope"),
        ({"scope": "admin"}, "scope mapping: mdid must be an integer"),
        ({"scope": "admin", "mdid": "abc"}, "scope mapping: mdid must be an integer"),
        ({"scope": "admin", "mdid": True}, "scope mapping: mdid must be an integer"),
    ],
)
def test_parse_mapping_refuses_bad_bodies(body: Any, message: str) -> None:
    with pytest.raises(InvalidBody, match=f"^{message}$"):
        Store.parse_mapping(body)


def test_mapping_to_a_missing_mdid_is_404_but_201_with_quirks(store: Store, quirky: Store) -> None:
    assert store.post_mapping("read:free_data", 42) == Reply(404, "No metadata found")
    assert quirky.post_mapping("read:free_data", 42) == Reply(201, 1)  # Hazard 9


def test_deleting_the_admin_mapping_hides_the_dataset_even_from_admins(configured: Store) -> None:
    mdid = post(configured, dataset()).body
    assert configured.delete_mapping("admin", mdid) == Reply(204)
    assert configured.delete_mapping("admin", mdid) == Reply(204)  # absent: 204 too
    assert configured.query(query_body(), ADMIN) == Reply(404, "Category not found")
    assert configured.list_entities(K.INDICATOR, ADMIN).body == {"indicators": []}


def test_for_category_lists_indicators_of_a_visible_category(configured: Store) -> None:
    mdid = post(configured, dataset()).body
    configured.post_mapping("read:free_data", mdid)
    # Observed: every indicator of a visible category, whether it has data or not.
    assert ids(configured.for_category(K.INDICATOR, "residents", READER), K.INDICATOR) == [
        "residents.residents",
        "residents.abnormality",
    ]
    spatial = configured.for_category(K.SPATIAL_RESOLUTION, "residents", READER)
    shaped = {**COMMUNES, "description": None, "boundaries": None, "translation": None}
    assert spatial.body == {"spatial_resolutions": [shaped]}
    assert ids(configured.for_category(K.TEMPORAL_RESOLUTION, "residents", READER),
               K.TEMPORAL_RESOLUTION) == [2]  # fmt: skip
    assert configured.for_category(K.TEMPORAL_RESOLUTION, "relocations", READER).body == {
        "temporal_resolutions": []
    }


def test_temporal_resolutions_list_in_trid_order_others_in_creation_order(store: Store) -> None:
    for kind, body in ((K.TEMPORAL_RESOLUTION, DAY), (K.TEMPORAL_RESOLUTION, MONTH),
                       (K.CATEGORY, RELOCATIONS), (K.CATEGORY, RESIDENTS)):  # fmt: skip
        assert store.post_entity(kind, body).status == 201
    post(store, dataset(trid=2))
    post(store, dataset(trid=4, category="relocations", indicator="relocations.relocations",
                        data_type="flow", values={("A", "B"): 1}))  # fmt: skip
    assert ids(store.list_entities(K.TEMPORAL_RESOLUTION, ADMIN), K.TEMPORAL_RESOLUTION) == [2, 4]
    assert ids(store.list_entities(K.CATEGORY, ADMIN), K.CATEGORY) == ["relocations", "residents"]


# ---------------------------------------------------------------------------------------
# Datasets


def test_create_answers_201_with_the_mdid_then_303_without_updating(configured: Store) -> None:
    assert post(configured, dataset()) == Reply(201, 1)
    assert post(configured, dataset({"HT0111-01": 11, "HT0111-02": 22})) == Reply(303, 1)
    body = configured.query(query_body(), ADMIN).body
    assert body["data_by_date"] == {"2020-02": {"HT0111-01": 10.0, "HT0111-02": 20.0}}
    assert configured.value_count() == 2


@pytest.mark.parametrize(
    "change",
    [
        {"category": "custom"},
        {"indicator": "residents.abnormality"},
        {"srid": 99},
        {"trid": 4},
        {"dt": "2020-03-01 00:00:00"},
    ],
)
def test_identity_is_category_indicator_srid_trid_and_dt(
    configured: Store, change: dict[str, Any]
) -> None:
    assert post(configured, dataset()) == Reply(201, 1)
    assert post(configured, dataset(**change)) == Reply(201, 2)  # the server checks no config


@pytest.mark.parametrize("dt", ["2020-02-01T00:00:00", "2020-02-01 00:00", " 2020-02-01 00:00:00"])
def test_accepted_dt_forms_name_the_same_dataset(configured: Store, dt: str) -> None:
    assert post(configured, dataset()) == Reply(201, 1)
    assert post(configured, dataset(dt=dt)) == Reply(303, 1)


# What was sent and what DECIMAL(20,9) kept (observed on the real service).
SENT_AND_STORED = [
    (0.123456789012, "0.123456789"),
    (-0.68, "-0.680000000"),
    (0.5, "0.500000000"),
    (-0.5, "-0.500000000"),
    (1e-10, "0E-9"),
    (2.5, "2.500000000"),
    (1.5, "1.500000000"),
    (123456.12345678912, "123456.123456789"),
    (-1.49, "-1.490000000"),
]


# ... and the floats /query answers for them.
FLOATS_READ_BACK = {"A": 0.123456789, "B": -0.68, "C": 0.5, "D": -0.5, "E": 0.0, "F": 2.5,
                    "G": 1.5, "H": 123456.123456789, "I": -1.49}  # fmt: skip


def test_values_are_kept_as_decimal_20_9_and_read_back_as_floats(configured: Store) -> None:
    units = "ABCDEFGHI"
    body = dataset(dict(zip(units, (sent for sent, _ in SENT_AND_STORED), strict=True)))
    assert post(configured, body) == Reply(201, 1)
    csv = configured.csv(query_body(), ADMIN)
    assert csv.status == 200 and csv.plain
    assert csv.body == "date,area_code,value\r\n" + "".join(
        f"2020-02-01,{unit},{stored}\r\n"
        for unit, (_, stored) in zip(units, SENT_AND_STORED, strict=True)
    )
    assert configured.query(query_body(), ADMIN) == Reply(
        200,
        {
            "min": -1.49,
            "max": 123456.123456789,
            "data_by_date": {"2020-02": FLOATS_READ_BACK},
            "mdids": None,
        },
    )
    timerange = configured.timerange("residents", "residents.residents", 3, 2, ADMIN).body
    assert (timerange["min_value"], timerange["max_value"]) == (-1, 123456)  # INT columns


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (1.5e-09, "0.000000002"),  # half away from zero at the ninth decimal
        (-1.5e-09, "-0.000000002"),
        (1.0000000014, "1.000000001"),
        (-0.0000000004, "0E-9"),
        ("2.25", "2.250000000"),  # a numeric string is taken as pydantic takes it
        (2147483647, "2147483647.000000000"),
        (-7, "-7.000000000"),
        (2147483647.4, "2147483647.400000000"),  # its INT max rounds to 2147483647: accepted
    ],
)
def test_values_round_to_nine_decimals(configured: Store, sent: Any, stored: str) -> None:
    assert post(configured, dataset({"A": sent})) == Reply(201, 1)
    assert configured.csv(query_body(), ADMIN).body.splitlines()[1] == f"2020-02-01,A,{stored}"


def test_values_between_minus_and_plus_half_give_min_max_zero(configured: Store) -> None:
    post(configured, dataset({"A": 0.49, "B": -0.49, "C": 0.01}))
    timerange = configured.timerange("residents", "residents.residents", 3, 2, ADMIN).body
    assert (timerange["min_value"], timerange["max_value"]) == (0, 0)


@pytest.mark.parametrize(
    ("values", "column"),
    [
        ({"A": 3e9}, "min_value"),  # observed: a lone 3e9 fails the min first
        ({"A": 1, "B": 12345678901.5}, "max_value"),
        ({"A": 1, "B": 1e12}, "max_value"),  # beyond DECIMAL(20,9) too
        ({"A": -3e9, "B": 1}, "min_value"),
        ({"A": 1, "B": 2147483647.5}, "max_value"),  # rounds to 2147483648
    ],
)
def test_values_beyond_the_int_min_max_columns_are_refused(
    configured: Store, values: dict[str, float], column: str
) -> None:
    assert post(configured, dataset(values)) == failure(
        f"(1264, \"Out of range value for column '{column}' at row 1\")"
    )
    assert configured.value_count() == 0


@pytest.mark.parametrize("nan", [math.nan, "NaN", "nan"])
@pytest.mark.parametrize("quirks", [False, True])
def test_nan_answers_mysqls_500_with_or_without_quirks(
    tmp_path: Path, nan: Any, quirks: bool
) -> None:
    store = Store(str(tmp_path / "nan.db"), quirks=quirks)
    with pytest.raises(InvalidBody) as raised:
        store.parse_dataset(dataset({"A": 1, "B": nan}))
    assert store.invalid(raised.value) == Reply(
        500, "Something went wrong: nan can not be used with MySQL"
    )
    assert store.value_count() == 0
    store.close()


def _without(name: str) -> dict[str, Any]:
    body = dataset()
    del body["metadata"][name]
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("dataset", "dataset must be an object"),
        ({"data_input": []}, "dataset: field required: metadata"),
        (_without("revision"), "metadata: field required: revision"),
        (_without("trid"), "metadata: field required: trid"),
        (dataset(srid="3"), "metadata: srid must be an integer"),
        (dataset(trid=True), "metadata: trid must be an integer"),
        (dataset(dt="2020-02"), "metadata: dt must be a datetime 'YYYY-MM-DD HH:MM:SS'"),
        (dataset(dt="2020-02-01"), "metadata: dt must be a datetime 'YYYY-MM-DD HH:MM:SS'"),
        ({**dataset(), "data_input": None}, "dataset: field required: data_input"),
        ({**dataset(), "data_input": [["A", 1]]}, "data_input items must be objects"),
        ({**dataset(), "data_input": [{"spatial_unit_ids": [], "data": 1}]},
         "data_input: spatial_unit_ids must be a list"),
        ({**dataset(), "data_input": [{"spatial_unit_ids": "A", "data": 1}]},
         "data_input: spatial_unit_ids must be a list"),
        (dataset({"A": "abc"}), "data_input: data must be a number"),
        (dataset({"A": None}), "data_input: data must be a number"),
        (dataset({"A": True}), "data_input: data must be a number"),
        (dataset({"A": math.inf}), "data_input: data must be finite"),
        (dataset({"A": "-inf"}), "data_input: data must be finite"),
    ],
)  # fmt: skip
def test_invalid_dataset_bodies_are_422_with_a_message(
    store: Store, body: Any, message: str
) -> None:
    with pytest.raises(InvalidBody) as raised:
        store.parse_dataset(body)
    assert str(raised.value) == message
    assert store.invalid(raised.value) == Reply(422, message)


def test_parsed_dataset_carries_units_destinations_and_nanos(store: Store) -> None:
    incoming = store.parse_dataset(
        dataset({("A", "B"): 1.5, (7, 8): -2}, data_type="flow", category="relocations")
    )
    assert incoming.data_type == "flow"
    assert incoming.units == ["A", "7"]
    assert incoming.destinations == ["B", "8"]
    assert incoming.nanos == [1_500_000_000, -2_000_000_000]
    assert incoming.metadata["category_id"] == "relocations"


def test_empty_unknown_type_and_flow_without_destination_are_refused(configured: Store) -> None:
    assert post(configured, dataset({})) == Reply(400, "No data to ingest")
    assert post(configured, dataset(data_type="grid")) == Reply(400, 'Unknown data type "grid"')
    one_sided = dataset({"A": 1}, data_type="flow", category="relocations",
                        indicator="relocations.relocations")  # fmt: skip
    assert post(configured, one_sided) == failure("list index out of range")
    assert configured.value_count() == 0


def test_patch_gives_a_new_mdid_and_drops_non_admin_mappings(configured: Store) -> None:
    mdid = post(configured, dataset()).body
    configured.post_mapping("read:free_data", mdid)
    assert post(configured, dataset({"HT0111-01": 11, "HT0111-02": 22}), replace=True) == Reply(
        201, 2
    )
    assert configured.query(query_body(), READER) == Reply(404, "Category not found")  # observed
    assert mdids(configured) == ["2"]
    assert configured.post_mapping("read:free_data", 1) == Reply(404, "No metadata found")
    assert configured.query(query_body(), ADMIN).body["data_by_date"] == {
        "2020-02": {"HT0111-01": 11.0, "HT0111-02": 22.0}
    }
    assert configured.value_count() == 2


def test_patch_of_an_absent_dataset_creates_it(configured: Store) -> None:
    assert post(configured, dataset(), replace=True) == Reply(201, 1)
    assert mdids(configured) == ["1"]


def test_delete_dataset_removes_it_and_answers_204_when_absent(configured: Store) -> None:
    post(configured, dataset())
    only_metadata = {**dataset(), "data_input": []}
    assert configured.delete_dataset(only_metadata) == Reply(204)
    assert configured.value_count() == 0
    assert configured.post_mapping("admin", 1) == Reply(404, "No metadata found")  # gone too
    assert configured.query(query_body(), ADMIN) == Reply(404, "Category not found")
    assert configured.delete_dataset(only_metadata) == Reply(204)
    assert configured.delete_dataset({"data_input": []}) == Reply(
        422, "dataset: field required: metadata"
    )
    assert post(configured, dataset()) == Reply(201, 2)  # its identity is free again


def test_client_supplied_mdid_is_ignored_without_quirks(configured: Store) -> None:
    assert post(configured, dataset()) == Reply(201, 1)
    assert post(configured, dataset(dt="2020-06-01 00:00:00", mdid=1)) == Reply(201, 2)
    assert mdids(configured, start="2020-06") == ["2"]


def test_quirks_client_mdid_is_stored_and_reads_the_data_under_it(quirky: Store) -> None:
    quirky.post_setup(FULL_CONFIG)
    assert post(quirky, dataset({"A": 1.5})) == Reply(201, 1)
    assert post(quirky, dataset({"A": 2})) == Reply(303, 1)
    # Observed: 201 with the row id, the mdid stored as given, and the 2020-06 dataset
    # read back with the data stored under mdid 1, dated by both rows.
    assert post(quirky, dataset({"A": 9}, dt="2020-06-01 00:00:00", mdid=1)) == Reply(201, 2)
    assert quirky.query(query_body("2020-06"), ADMIN).body["data_by_date"] == {
        "2020-02": {"A": 1.5},
        "2020-06": {"A": 1.5},
    }


@pytest.mark.parametrize("quirks", [False, True])
def test_duplicate_identity_makes_every_later_write_ambiguous(tmp_path: Path, quirks: bool) -> None:
    store = Store(str(tmp_path / "race.db"), quirks=quirks)
    store.post_setup(FULL_CONFIG)
    assert post(store, dataset()) == Reply(201, 1)
    second = duplicate_identity(store.path, 1)
    ambiguous = Reply(500, "Ambiguous dataset")
    assert post(store, dataset()) == ambiguous
    assert post(store, dataset(), replace=True) == ambiguous
    assert store.delete_dataset(dataset()) == ambiguous
    assert mdids(store) == ["1", str(second)]
    store.close()


# ---------------------------------------------------------------------------------------
# /query, /csv, /timerange, /latest_date


@pytest.fixture
def months(configured: Store) -> Store:
    """residents.residents on February to May 2020, and February's mapped for readers."""
    for month, value in ((2, 10), (3, 30), (4, -40), (5, 50)):
        reply = post(configured, dataset({"A": value}, dt=f"2020-{month:02d}-01 00:00:00"))
        assert reply == Reply(201, month - 1)
    configured.post_mapping("read:free_data", 1)
    return configured


def test_query_range_is_start_plus_duration_minus_one_steps(months: Store) -> None:
    assert months.query(query_body("2020-02", 3), ADMIN) == Reply(
        200,
        {
            "min": -40.0,
            "max": 30.0,
            "data_by_date": {
                "2020-02": {"A": 10.0},
                "2020-03": {"A": 30.0},
                "2020-04": {"A": -40.0},
            },
            "mdids": None,
        },
    )
    assert mdids(months, start="2020-03", duration=1) == ["2"]
    assert mdids(months, start="2020", duration=12) == ["1", "2", "3", "4"]


def test_query_shows_a_reader_only_what_is_mapped_to_it(months: Store) -> None:
    assert mdids(months, READER, start="2020-02", duration=6) == ["1"]
    assert months.query(query_body("2020-03", 2), READER) == Reply(404, "No metadata found")


def test_mdids_only_repeats_an_mdid_once_per_matching_mapping(months: Store) -> None:
    both = Principal(frozenset({"read:free_data"}), frozenset({"admin", "read:free_data"}))
    assert months.query(query_body("2020-02", 2, mdids_only=True), both) == Reply(
        200, {"min": None, "max": None, "data_by_date": None, "mdids": ["1", "1", "2"]}
    )


def test_daily_query_keys_dates_by_the_resolution_format(configured: Store) -> None:
    for day in (1, 2, 3):
        post(configured, dataset({"A": day}, trid=4, dt=f"2020-02-0{day} 00:00:00"))
    body = configured.query(query_body("2020-02-02", 2, trid=4), ADMIN).body
    assert body["data_by_date"] == {"2020-02-02": {"A": 2.0}, "2020-02-03": {"A": 3.0}}


def test_flow_query_nests_destinations_under_origins(configured: Store) -> None:
    flows = dataset({("A", "B"): 6040, ("A", "C"): 8720, ("B", "A"): 60}, data_type="flow",
                    category="relocations", indicator="relocations.relocations")  # fmt: skip
    post(configured, flows)
    body = configured.query(
        query_body(category="relocations", indicator="relocations.relocations"), ADMIN
    ).body
    assert body["data_by_date"] == {"2020-02": {"A": {"B": 6040.0, "C": 8720.0}, "B": {"A": 60.0}}}
    assert (body["min"], body["max"]) == (60.0, 8720.0)
    csv = configured.csv(query_body(category="relocations", indicator="relocations.relocations"),
                         ADMIN)  # fmt: skip
    assert csv == Reply(
        200,
        "date,origin_code,destination_code,value\r\n2020-02-01,A,B,6040.000000000\r\n"
        "2020-02-01,A,C,8720.000000000\r\n2020-02-01,B,A,60.000000000\r\n",
        plain=True,
    )


def test_query_refusals(months: Store) -> None:
    assert months.query(query_body(category="movements"), ADMIN) == Reply(404, "Category not found")
    assert months.query(query_body(trid=4), ADMIN) == Reply(404, "Temporal resolution not found")
    assert months.query(query_body("2021-01"), ADMIN) == Reply(404, "No metadata found")
    assert months.query(query_body(indicator="residents.nope"), ADMIN) == Reply(
        404, "No metadata found"
    )


def test_invalid_query_is_422_with_a_message(months: Store) -> None:
    bad = query_body("2020/02")
    assert months.query(bad, ADMIN) == Reply(
        422, "query: start_date does not match the expected format"
    )
    assert months.csv(bad, ADMIN) == Reply(
        422, "query: start_date does not match the expected format"
    )


def test_csv_only_for_builtin_categories_with_visible_data(configured: Store) -> None:
    post(configured, dataset(category="custom", indicator="custom.custom"))
    plain_500 = Reply(500, "Internal Server Error", plain=True)
    assert configured.csv(query_body(category="custom", indicator="custom.custom"), ADMIN) == (
        plain_500
    )
    post(configured, dataset({"A": 0, "B": 544650}))
    assert configured.csv(query_body(), ADMIN) == Reply(
        200, "date,area_code,value\r\n2020-02-01,A,0E-9\r\n2020-02-01,B,544650.000000000\r\n",
        plain=True,
    )  # fmt: skip
    assert configured.csv(query_body("2021-01"), ADMIN) == plain_500  # nothing in range


def test_timerange_fills_gaps_in_the_resolution_format(configured: Store) -> None:
    post(configured, dataset({"A": 480, "B": 1.6}, dt="2020-02-01 00:00:00"))
    post(configured, dataset({"A": 553560.5}, dt="2020-05-01 00:00:00"))
    assert configured.timerange("residents", "residents.residents", 3, 2, ADMIN) == Reply(
        200,
        {
            "start_date": "2020-02",
            "end_date": "2020-05",
            "all_dates": ["2020-02", "2020-03", "2020-04", "2020-05"],
            "min_value": 2,
            "max_value": 553561,
        },
    )


def test_timerange_unknown_indicator_is_all_null_invisible_resolution_500(
    months: Store,
) -> None:
    assert months.timerange("residents", "residents.nope", 3, 2, ADMIN) == Reply(
        200,
        {"start_date": None, "end_date": None, "all_dates": None, "min_value": None,
         "max_value": None},
    )  # fmt: skip
    assert months.timerange("residents", "residents.residents", 3, 4, ADMIN) == failure(
        "list index out of range"
    )


def test_latest_date_counts_only_premium_mapped_datasets(months: Store) -> None:
    assert months.latest_date() == failure("tuple index out of range")  # admin, free: no
    months.post_mapping("read:premium_data", 3)
    assert months.latest_date() == Reply(200, {"latest_date": "2020-04-01"})


# ---------------------------------------------------------------------------------------
# parse_query and the date and value helpers


def test_parse_query_answers_a_copy_of_a_valid_body() -> None:
    body = query_body("2020w05", 3, mdids_only=True)
    parsed = parse_query(body)
    assert parsed == body
    assert parsed is not body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "query must be an object"),
        ({k: v for k, v in query_body().items() if k != "duration"},
         "query: field required: duration"),
        (query_body(category=None), "query: field required: category_id"),  # type: ignore[arg-type]
        (query_body(srid="3"), "query: srid must be a positive integer"),  # type: ignore[arg-type]
        (query_body(trid=True), "query: trid must be a positive integer"),
        (query_body(duration=0), "query: duration must be a positive integer"),
        (query_body(srid=-1), "query: srid must be a positive integer"),
        ({**query_body(), "start_date": 202002},
         "query: start_date does not match the expected format"),
        (query_body("2020-02-01 00:00"), "query: start_date does not match the expected format"),
        (query_body("2020-13"), "query: start_date does not match the expected format"),
    ],
)  # fmt: skip
def test_parse_query_refuses_bad_bodies(body: Any, message: str) -> None:
    with pytest.raises(InvalidBody) as raised:
        parse_query(body)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2020", datetime(2020, 1, 1)),
        ("2020-02", datetime(2020, 2, 1)),
        ("2020-02-15", datetime(2020, 2, 15)),
        ("2020-02-15T10:30", datetime(2020, 2, 15, 10, 30)),
        ("2020-02-15T10:30:45", datetime(2020, 2, 15, 10, 30, 45)),
        ("2020w05", datetime(2020, 1, 27)),  # an ISO week: its Monday
        ("2020w53", datetime(2020, 12, 28)),
        ("2021w01", datetime(2021, 1, 4)),
    ],
)
def test_start_dates_the_query_understands(text: str, moment: datetime) -> None:
    assert _parse_start(text) == moment


@pytest.mark.parametrize(
    "text",
    ["", "20", "2020-2", "20200215", "2020-13", "2020-02-30", "2020-02-15 10:30",
     "2020-02-15T24:00", "2020w00", "2020w54", "2020W05", "2020-02-15T10:30Z"],
)  # fmt: skip
def test_start_dates_the_query_refuses(text: str) -> None:
    assert _parse_start(text) is None


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2020-02-01 00:00:00", datetime(2020, 2, 1)),
        ("2020-02-01T06:30:00", datetime(2020, 2, 1, 6, 30)),
        ("2020-02-01 06:30", datetime(2020, 2, 1, 6, 30)),
        ("  2020-02-01 00:00:00\n", datetime(2020, 2, 1)),
        ("2020-02-01 00:00:00.250000", datetime(2020, 2, 1, 0, 0, 0, 250000)),
    ],
)
def test_dataset_dt_forms_taken_as_datetimes(value: str, moment: datetime) -> None:
    assert _parse_dt(value) == moment


@pytest.mark.parametrize(
    "value", ["2020-02", "2020-02-01", "2020-02-30 00:00:00", "02/01/2020 00:00", 20200201, None]
)
def test_dataset_dt_without_a_time_or_not_a_text_is_refused(value: Any) -> None:
    assert _parse_dt(value) is None


@pytest.mark.parametrize(
    ("nanos", "rounded"),
    [
        (0, 0),
        (499_999_999, 0),
        (500_000_000, 1),  # half away from zero
        (-500_000_000, -1),
        (-499_999_999, 0),
        (2_500_000_000, 3),
        (-1_490_000_000, -1),
        (123456_123456789, 123456),
    ],
)
def test_int_round_is_what_an_int_column_keeps(nanos: int, rounded: int) -> None:
    assert _int_round(nanos) == rounded


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0E-9"),
        (1, "0.000000001"),
        (-1, "-0.000000001"),
        (544650_000_000_000, "544650.000000000"),
        (-680_000_000, "-0.680000000"),
        (123456_123456789, "123456.123456789"),
    ],
)
def test_decimal_text_is_how_mysql_prints_decimal_20_9(nanos: int, text: str) -> None:
    assert _decimal_text(nanos) == text
