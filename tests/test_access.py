"""Access rules -> each scope's datasets (loader/access.py): indicator globs, resolutions
by label, and dates read as /query reads them (start + duration steps, or an open range
up to an inclusive `until`), in the first temporal resolution's format."""

from __future__ import annotations

import pytest

from loader.access import grants
from loader.model import (
    AccessRule,
    DatasetKey,
    Position,
    SetupConfig,
    SpatialResolution,
    TemporalResolution,
)
from loader.timegrid import DateError

SETUP = SetupConfig(
    entities=(),
    categories={},
    spatial={
        "Region": SpatialResolution(1, "Region", None, None),
        "District": SpatialResolution(2, "District", None, None),
    },
    temporal={
        "Month": TemporalResolution(2, "Month", "months", 1, "%Y-%m"),
        "Day": TemporalResolution(4, "Day", "days", 1, "%Y-%m-%d"),
        "Week": TemporalResolution(5, "Week", "weeks", 1, "%Gw%V"),
    },
)


def rule(scope: str = "read:free", indicator: str = "*", **fields: object) -> AccessRule:
    given: dict[str, object] = dict.fromkeys(
        ("spatial_resolutions", "temporal_resolutions", "start", "duration", "until")
    )
    given.update(fields)
    return AccessRule(scope, indicator, position=Position("m.yaml", 1, 1), **given)  # type: ignore[arg-type]


def key(indicator: str, srid: int, trid: int, date: str) -> DatasetKey:
    return DatasetKey("residents", indicator, srid, trid, f"{date} 00:00:00")


MONTHS = [key("residents.residents", 2, 2, f"2021-{m:02d}-01") for m in range(1, 5)]


def selected(one: AccessRule, keys: list[DatasetKey]) -> list[str]:
    return sorted(k.dt[:10] for k in grants([one], keys, SETUP)[one.scope])


def test_an_indicator_glob_matches_case_sensitively() -> None:
    keys = [key(i, 1, 2, "2021-01-01") for i in ("residents.a", "residents.b", "Residents.a",
                                                 "movements.a")]  # fmt: skip
    found = grants([rule(indicator="residents.*")], keys, SETUP)["read:free"]
    assert sorted(k.indicator_id for k in found) == ["residents.a", "residents.b"]


def test_resolution_labels_restrict_to_their_ids() -> None:
    keys = [key("residents.a", srid, trid, "2021-01-01") for srid in (1, 2) for trid in (2, 4)]
    one = rule(spatial_resolutions=("District",), temporal_resolutions=("Month", "Day"))
    found = grants([one], keys, SETUP)["read:free"]
    assert sorted((k.srid, k.trid) for k in found) == [(2, 2), (2, 4)]


def test_start_and_duration_select_that_many_steps_from_start() -> None:
    one = rule(temporal_resolutions=("Month",), start="2021-02", duration=2)
    assert selected(one, MONTHS) == ["2021-02-01", "2021-03-01"]


@pytest.mark.parametrize(
    ("bounds", "dates"),
    [
        ({"until": "2021-02"}, ["2021-01-01", "2021-02-01"]),  # open below, until inclusive
        ({"start": "2021-03"}, ["2021-03-01", "2021-04-01"]),  # open above
        ({"start": "2021-02", "until": "2021-03"}, ["2021-02-01", "2021-03-01"]),
    ],
)
def test_without_a_duration_the_range_is_open_up_to_an_inclusive_until(
    bounds: dict[str, str], dates: list[str]
) -> None:
    assert selected(rule(temporal_resolutions=("Month",), **bounds), MONTHS) == dates


def test_dates_are_read_in_the_first_temporal_resolutions_format() -> None:
    days = [key("residents.a", 2, 4, d) for d in ("2021-01-29", "2021-01-30", "2021-01-31",
                                                  "2021-02-01", "2021-02-02")]  # fmt: skip
    one = rule(temporal_resolutions=("Day", "Month"), start="2021-01-30", duration=3)
    assert selected(one, days) == ["2021-01-30", "2021-01-31", "2021-02-01"]
    # An ISO week start is that week's Monday: 2021w02 is 11 January.
    mondays = [key("residents.a", 2, 5, d) for d in ("2021-01-04", "2021-01-11", "2021-01-18",
                                                     "2021-01-25")]  # fmt: skip
    week = rule(temporal_resolutions=("Week",), start="2021w02", duration=2)
    assert selected(week, mondays) == ["2021-01-11", "2021-01-18"]


def test_a_scope_gets_the_union_of_its_rules_and_every_scope_is_listed() -> None:
    rules = [
        rule("read:free", temporal_resolutions=("Month",), until="2021-01"),
        rule("read:free", temporal_resolutions=("Month",), start="2021-04"),
        rule("read:premium", indicator="movements.*"),
    ]
    found = grants(rules, iter(MONTHS), SETUP)  # keys read once, for every rule
    assert found == {"read:free": frozenset({MONTHS[0], MONTHS[3]}), "read:premium": frozenset()}
    assert grants([], MONTHS, SETUP) == {}


def test_a_start_not_in_the_resolutions_format_is_refused() -> None:
    with pytest.raises(DateError) as refused:
        grants([rule(temporal_resolutions=("Month",), start="2021-02-01")], MONTHS, SETUP)
    assert str(refused.value) == (
        "'2021-02-01' is not a date in the resolution's format %Y-%m (for example 2020-02)"
    )
