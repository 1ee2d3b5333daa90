"""Reading a deployment back (loader/readback.py): the config as shown, the series found
and counted, values by /csv and by /query, the bound under which /query's floats are
exact, and grants found as stretches of dates."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.backends.local import LocalBackend
from loader.backends.store import Principal
from loader.model import (
    NANOS_PER_UNIT,
    BackendError,
    EntityKind,
    QueryRange,
    nanos_to_text,
    value_nanos,
)
from loader.readback import (
    EXACT_FLOAT_BELOW,
    Series,
    Values,
    decimal_nanos,
    find_series,
    granted_stretches,
    grids,
    read_config,
    read_values,
)
from tests.manifests import EVERYONE, deployment, put

QUERY = QueryRange("residents", "residents.residents", 1, 1, "2021-01", 1)


BOUND = EXACT_FLOAT_BELOW * NANOS_PER_UNIT


@given(st.integers(-BOUND + 1, BOUND - 1))
def test_below_the_bound_a_float_of_the_stored_decimal_rounds_back_to_it(nanos: int) -> None:
    assert value_nanos(float(nanos_to_text(nanos))) == nanos


@pytest.mark.parametrize("nanos", [8496112090490383, 2147483646_123456789])
def test_above_the_bound_a_float_may_not(nanos: int) -> None:
    assert nanos > BOUND
    assert value_nanos(float(nanos_to_text(nanos))) != nanos


@pytest.mark.parametrize(("text", "nanos"), [
    ("544650.000000000", 544650 * NANOS_PER_UNIT), ("0E-9", 0), ("-0.680000000", -680000000),
    ("2147483646.123456789", 2147483646_123456789),
])  # fmt: skip
def test_csv_decimals_are_read_exactly(text: str, nanos: int) -> None:
    assert decimal_nanos(text, QUERY) == nanos


def test_a_csv_value_that_is_no_number_is_one_error() -> None:
    with pytest.raises(BackendError, match=r"POST /csv: 200 residents.residents: a value 'x'"):
        decimal_nanos("x", QUERY)


def test_the_config_is_read_as_shown_and_the_series_counted(tmp_path: Path) -> None:
    store, _ = deployment(tmp_path)
    put(store, "2021-01-01 00:00:00", {"D1": 5}, EVERYONE)
    put(store, "2021-03-01 00:00:00", {"D2": 6})
    with LocalBackend(store.path) as backend:
        config = read_config(backend)
        (spatial,) = config[EntityKind.SPATIAL_RESOLUTION.value]
        assert spatial["boundaries"]["type"] == "FeatureCollection"  # the list has none
        assert all(None not in e.values() for kind in config.values() for e in kind)
        (series,) = find_series(backend, config)
        assert series.dates == ("2021-01", "2021-02", "2021-03") and series.count == 2
        assert Series.from_json(series.to_json()) == series
        values = read_values(backend, series.windows[0], grids(config)[1])
    assert values.datasets == {"2021-01-01 00:00:00": {("D1",): 5},
                               "2021-03-01 00:00:00": {("D2",): 6}}  # fmt: skip
    assert Values.from_json(values.to_json()) == values


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(("gap", "granted", "hidden")), min_size=1, max_size=40))
def test_the_stretches_a_reader_sees_are_exactly_its_granted_dates(
    tmp_path_factory: Any, months: list[str]
) -> None:
    """Each month a dataset granted to the scope, one that is not, or none (a gap): the
    stretches found hold every granted dataset and no other."""
    months = ["granted", *months]  # a series starts with a dataset
    store, _ = deployment(tmp_path_factory.mktemp("stretches"))
    for index, kind in enumerate(months):
        if kind != "gap":
            dt = f"{2000 + index // 12}-{index % 12 + 1:02d}-01 00:00:00"
            put(store, dt, {"D1": index}, ("read:free_data",) if kind == "granted" else ())
    last = max(i for i, kind in enumerate(months) if kind != "gap")
    dates = tuple(f"{2000 + i // 12}-{i % 12 + 1:02d}" for i in range(last + 1))
    series = Series("residents", "residents.residents", 1, 1, dates)
    with LocalBackend(store.path, principal=Principal.full()) as everything:
        found = granted_stretches(everything, everything.reader("read:free_data"), series)
    covered = {first + step for first, count in found for step in range(count)}
    assert {i for i in covered if months[i] != "gap"} == {
        i for i, kind in enumerate(months) if kind == "granted"
    }
    assert all(a + n < b for (a, n), (b, _) in pairwise(found))  # stretches kept apart
