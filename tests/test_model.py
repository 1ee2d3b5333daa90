"""The shared vocabulary of loader/model.py: message helpers (plural, excerpt, json_kind),
exact value arithmetic in nanos, dataset keys and their JSON form, the content digest,
and the small conversions to and from what the backend answers."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from loader.model import (
    DatasetKey,
    KeyShapeError,
    QueryRange,
    ResolutionLabels,
    canonical_nanos,
    content_of,
    dataset_digest,
    excerpt,
    json_kind,
    loader_version,
    metadata_of,
    nanos_to_float,
    nanos_to_text,
    plural,
    stored_matches,
    value_nanos,
)

KEY = DatasetKey("residents", "residents.residents", 2, 2, "2021-01-01 00:00:00")
KEY_JSON = {"category_id": "residents", "indicator_id": "residents.residents", "srid": 2,
            "trid": 2, "dt": "2021-01-01 00:00:00"}  # fmt: skip


def test_plural() -> None:
    assert plural(1, "dataset") == "1 dataset"
    assert plural(0, "value") == "0 values"
    assert plural(1024, "config entity", "config entities") == "1,024 config entities"
    assert plural(1, "entity", "entities") == "1 entity"


def test_excerpt() -> None:
    assert excerpt("plain text") == "plain text"
    assert excerpt("a\nb\tc") == "a\\nb\\tc"
    long = excerpt("x" * 100)
    assert long == "x" * 57 + "..." and len(long) == 60
    assert excerpt([1, 2]) == "[1, 2]"
    assert excerpt(None) == "None"
    assert excerpt({"a": {"b": {"c": 1}}}) == "{'a': {'b': {...}}}"
    assert excerpt("abcdefghij", limit=8) == "abcde..."


@pytest.mark.parametrize(("value", "kind"), [
    ({}, "an object"), ([], "an array"), ("s", "a string"), (3, "an integer"),
    (1.5, "a number"), (True, "true or false"), (None, "null"), ((1,), "tuple"),
])  # fmt: skip
def test_json_kind(value: object, kind: str) -> None:
    assert json_kind(value) == kind


@pytest.mark.parametrize(("value", "nanos"), [
    (0.0, 0), (-0.0, 0), (1.5, 1_500_000_000), (-2.0, -2_000_000_000), (0.1, 100_000_000),
    (0.1234567895, 123_456_790), (-0.1234567895, -123_456_790), (0.1234567894, 123_456_789),
    (1.5e-9, 2), (-2.5e-9, -3), (1e-10, 0), (2147483647.0, 2_147_483_647 * 10**9),
])  # fmt: skip
def test_value_nanos_rounds_half_away_from_zero_like_canonical_nanos(
    value: float, nanos: int
) -> None:
    assert value_nanos(value) == nanos
    assert canonical_nanos(value) == nanos
    assert canonical_nanos(repr(value)) == nanos


@pytest.mark.parametrize(("nanos", "text"), [
    (0, "0"), (1_500_000_000, "1.5"), (-1, "-0.000000001"), (2_000_000_000, "2"),
    (-123_456_789_000, "-123.456789"), (10**9 + 1, "1.000000001"),
])  # fmt: skip
def test_nanos_to_text_and_float(nanos: int, text: str) -> None:
    assert nanos_to_text(nanos) == text
    assert nanos_to_float(nanos) == float(text)
    assert value_nanos(nanos_to_float(nanos)) == nanos


def test_dataset_key_text_and_json_round_trip() -> None:
    assert str(KEY) == "residents.residents srid=2 trid=2 2021-01-01 00:00:00"
    assert KEY.to_json() == KEY_JSON
    assert DatasetKey.from_json(KEY.to_json()) == KEY


@pytest.mark.parametrize(("raw", "name", "expected"), [
    ({**KEY_JSON, "srid": "2"}, "srid", "an integer"),
    ({**KEY_JSON, "trid": True}, "trid", "an integer"),
    ({k: v for k, v in KEY_JSON.items() if k != "dt"}, "dt", "a string"),
    ({**KEY_JSON, "indicator_id": 5}, "indicator_id", "a string"),
    (["not", "a", "mapping"], "category_id", "a string"),
])  # fmt: skip
def test_dataset_key_from_json_names_the_first_bad_field(
    raw: object, name: str, expected: str
) -> None:
    with pytest.raises(KeyShapeError) as raised:
        DatasetKey.from_json(raw)  # type: ignore[arg-type]
    assert (raised.value.name, raised.value.expected) == (name, expected)
    assert str(raised.value) == f"{name}: {expected} expected"


def test_dataset_digest_is_stable_and_covers_every_input() -> None:
    base = (KEY, "r1", "single_location", "EX01\nEX02\n", b"\1" * 16)
    digest = dataset_digest(*base)
    assert digest == dataset_digest(DatasetKey(**KEY_JSON), "r1", "single_location",
                                    "EX01\nEX02\n", bytes([1] * 16))  # fmt: skip
    assert digest.startswith("1:") and len(digest) == 2 + 64
    variants = [
        *[(DatasetKey(**{**KEY_JSON, name: value}), *base[1:]) for name, value in (
            ("category_id", "other"), ("indicator_id", "residents.arrived"), ("srid", 1),
            ("trid", 4), ("dt", "2021-02-01 00:00:00"))],
        (KEY, "r2", *base[2:]), (KEY, "r1", "flow", *base[3:]),
        (KEY, "r1", "single_location", "EX01\nEX03\n", base[4]),
        (*base[:4], b"\1" * 15 + b"\2"),
    ]  # fmt: skip
    digests = {dataset_digest(*v) for v in variants}  # type: ignore[arg-type]
    assert len(digests) == len(variants) == 9 and digest not in digests


def test_metadata_of_has_the_key_and_revision_and_no_mdid() -> None:
    assert metadata_of(KEY, "v1") == {"revision": "v1", **KEY_JSON}


def test_content_of_flattens_flows() -> None:
    answered = {
        "2021-01": {"EX01": 1.5, "EX02": 2.0},
        "2021-03-01": {"A": {"B": 3.0, "C": 4.0}, "D": {"A": 5.0}},
        "2021-04": {},
    }
    assert content_of(answered) == {
        "2021-01": {("EX01",): 1.5, ("EX02",): 2.0},
        "2021-03-01": {("A", "B"): 3.0, ("A", "C"): 4.0, ("D", "A"): 5.0},
        "2021-04": {},
    }


def test_query_range_body() -> None:
    query = QueryRange("movements", "movements.travellers", 2, 4, "2021-03-01", 14)
    assert query.body(True) == {"category_id": "movements", "indicator_id":
                                "movements.travellers", "srid": 2, "trid": 4, "start_date":
                                "2021-03-01", "duration": 14, "mdids_only": True}  # fmt: skip
    assert query.body(False)["mdids_only"] is False


@pytest.mark.parametrize(("desired", "stored", "matches"), [
    ({"srid": 2, "label": "District"}, {"srid": 2.0, "label": "District", "extra": 1}, True),
    ({"srid": 2}, {"srid": 3}, False),
    ({"label": "District"}, {"label": "Region"}, False),
    ({"srid": 2}, {"srid": "2"}, False),
    ({"description": None, "label": "x"}, {"label": "x"}, True),
    ({"absent": 1}, {}, True),
])  # fmt: skip
def test_stored_matches(desired: dict[str, object], stored: dict[str, object],
                        matches: bool) -> None:  # fmt: skip
    assert stored_matches(desired, stored) is matches


def test_loader_version_is_what_importlib_metadata_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert loader_version() == version("flowkit-loader")
    # The first metadata folder on the path wins, as for importlib.metadata; nothing
    # installed gives 'unknown'.
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "flowkit_loader-9.8.7.dist-info").mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(tmp_path / "first"),
                                      *sys.path])  # fmt: skip
    loader_version.cache_clear()
    try:
        assert loader_version() == "9.8.7"
        monkeypatch.setattr(sys, "path", [str(tmp_path / "missing")])
        loader_version.cache_clear()
        assert loader_version() == "unknown"
    finally:
        loader_version.cache_clear()


def test_resolution_labels_name_a_series_and_survive_any_json() -> None:
    labels = ResolutionLabels(((2, "District"),), ((2, "Month"), (4, "Day")))
    assert labels.series(2, 4) == "srid=2 (District) trid=4 (Day)"
    assert labels.series(7, 2) == "srid=7 trid=2 (Month)"  # an unknown id is shown bare
    assert ResolutionLabels.from_json(labels.to_json()) == labels
    for garbage in (None, [], "x", {"spatial": [1]}, {"spatial": {"x": "A"}, "temporal": 3}):
        assert ResolutionLabels.from_json(garbage) == ResolutionLabels()
