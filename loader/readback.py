"""A deployment read back through the service's own reads, for `export`: the config it
shows, the series that hold data, each series' values a window of dates at a time, and
the stretches of dates a scope's readers see.

Only what a client may read can be read (reference/backend-contract.md): config without a
visible dataset is not shown, revisions and `date_added` are never answered, grants can
only be seen as one scope's readers see them, and /query answers floats, while /csv gives
the stored DECIMAL's text but only for the built-in categories. So each read says what it
could not carry exactly, and export decides what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

from loader.contract import CSV_CATEGORIES
from loader.model import (
    NANOS_PER_UNIT,
    Backend,
    BackendError,
    EntityKind,
    ExactRow,
    QueryRange,
    value_nanos,
)
from loader.timegrid import DateError, Grid, backend_dt

WINDOW = 16  # dates read per request: a month of days in two requests, not thirty
# Below 2**23 a double's spacing (2**-30 at most) is finer than the DECIMAL's last digit
# (1e-9): the float /query answers then rounds back to exactly the stored value; above,
# about half of the 9-decimal values do not (tests/test_readback.py).
EXACT_FLOAT_BELOW = 2**23
CONFIG_KINDS = (
    EntityKind.CATEGORY,
    EntityKind.INDICATOR,
    EntityKind.SPATIAL_RESOLUTION,
    EntityKind.TEMPORAL_RESOLUTION,
)


def read_config(backend: Backend) -> dict[str, list[dict[str, Any]]]:
    """The config as the service shows it, in config.json's shape: languages and data
    providers all (GET /setup), the rest only where a dataset is visible; each spatial
    resolution with its boundaries (the list leaves them out)."""
    setup = backend.read_setup()
    config = {
        EntityKind.LANGUAGE.value: [_given(e) for e in setup.languages],
        EntityKind.DATA_PROVIDER.value: [_given(e) for e in setup.data_providers],
    }
    for kind in CONFIG_KINDS:
        shown = list(backend.list_entities(kind))
        if kind is EntityKind.SPATIAL_RESOLUTION:
            shown = [backend.read_entity(kind, e["srid"]) or e for e in shown]
        config[kind.value] = [_given(e) for e in shown]
    return config


def _given(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An entity as a config gives it: the service answers a field never set as null,
    which a config.json may not hold."""
    return {name: value for name, value in entity.items() if value is not None}


@dataclass(frozen=True)
class Series:
    """One indicator at one spatial and one temporal resolution: the dates from its first
    visible dataset to its last, in the resolution's format, gaps filled (/timerange)."""

    category_id: str
    indicator_id: str
    srid: int
    trid: int
    dates: tuple[str, ...]
    # Its datasets, counted by mdid over its dates and one step more (a dataset stored
    # off the grid after the last date is in no window): what the windows must find.
    count: int = 0

    def window(self, first: int, count: int) -> QueryRange:
        """The /query range of `count` dates from the `first`-th."""
        return QueryRange(self.category_id, self.indicator_id, self.srid, self.trid,
                          self.dates[first], count)  # fmt: skip

    @cached_property
    def windows(self) -> tuple[QueryRange, ...]:
        """Its dates WINDOW at a time (made once: export asks for them per window)."""
        return tuple(
            self.window(first, min(WINDOW, len(self.dates) - first))
            for first in range(0, len(self.dates), WINDOW)
        )

    def to_json(self) -> dict[str, Any]:
        return {"category_id": self.category_id, "indicator_id": self.indicator_id,
                "srid": self.srid, "trid": self.trid, "dates": list(self.dates),
                "count": self.count}  # fmt: skip

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Series:
        return cls(str(raw["category_id"]), str(raw["indicator_id"]), int(raw["srid"]),
                   int(raw["trid"]), tuple(str(d) for d in raw["dates"]),
                   int(raw["count"]))  # fmt: skip


def grids(config: Mapping[str, list[dict[str, Any]]]) -> dict[int, Grid]:
    """Each shown temporal resolution's calendar, by trid."""
    return {
        int(t["trid"]): Grid(str(t.get("relativedelta_unit")),
                             int(t.get("relativedelta_num") or 1), str(t.get("date_format")))
        for t in config[EntityKind.TEMPORAL_RESOLUTION.value]
    }  # fmt: skip


def find_series(
    backend: Backend, config: Mapping[str, list[dict[str, Any]]], parallelism: int = 1
) -> list[Series]:
    """Every series with a visible dataset: each shown indicator at each shown resolution,
    asked for its dates, and its datasets counted (cheap calls, `parallelism` at once; the
    service lists no series)."""
    combinations = [
        (str(indicator["category_id"]), str(indicator["indicator_id"]), int(spatial["srid"]),
         int(temporal["trid"]))
        for indicator in config[EntityKind.INDICATOR.value]
        for spatial in config[EntityKind.SPATIAL_RESOLUTION.value]
        for temporal in config[EntityKind.TEMPORAL_RESOLUTION.value]
    ]  # fmt: skip

    def look(combination: tuple[str, str, int, int]) -> Series | None:
        dates = backend.date_range(*combination)
        if not dates:
            return None
        one = Series(*combination, dates)
        return replace(one, count=len(backend.visible_mdids(one.window(0, len(dates) + 1))))

    with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="series") as pool:
        return [one for one in pool.map(look, combinations) if one is not None]


@dataclass
class Values:
    """The values of one window, dataset by dataset: backend `dt` -> unit tuple -> nanos;
    and the datasets that could not be carried as stored."""

    datasets: dict[str, dict[tuple[str, ...], int]] = field(default_factory=dict)
    inexact: list[str] = field(default_factory=list)  # dts whose floats may have lost digits
    off_grid: list[str] = field(default_factory=list)  # dates a manifest cannot name

    def to_json(self) -> dict[str, Any]:
        """Flat lists per dataset (units, destinations, nanos): quick to write and read."""
        datasets = {}
        for dt, cells in self.datasets.items():
            keys = list(cells)
            flow = any(len(key) == 2 for key in keys)
            datasets[dt] = [[key[0] for key in keys], [key[1] for key in keys] if flow else None,
                            list(cells.values())]  # fmt: skip
        return {"datasets": datasets, "inexact": self.inexact, "off_grid": self.off_grid}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Values:
        datasets = {}
        for dt, (units, destinations, nanos) in raw["datasets"].items():
            keys = zip(units, destinations, strict=True) if destinations else ((u,) for u in units)
            datasets[str(dt)] = dict(zip(keys, map(int, nanos), strict=True))
        return cls(datasets, list(raw["inexact"]), list(raw["off_grid"]))


def read_values(backend: Backend, query: QueryRange, grid: Grid) -> Values:
    """A window's values, the exact way where there is one: /csv for the built-in
    categories (the day is all it gives of a date: hourly series go by /query), else
    /query's floats, exact below EXACT_FLOAT_BELOW."""
    if query.category_id in CSV_CATEGORIES and grid.unit != "hours":
        if not backend.visible_mdids(query):
            return Values()  # a window in a gap: /csv would fail rather than say so
        rows = backend.exact_values(query)
        if rows is not None:
            return _from_rows(rows, grid, query)
    return _from_floats(backend, query, grid)


def _from_rows(rows: tuple[ExactRow, ...], grid: Grid, query: QueryRange) -> Values:
    values = Values()
    by_day: dict[str, dict[tuple[str, ...], int] | None] = {}  # None: off the grid
    for day, units, text in rows:
        cells = by_day.get(day, ...)
        if cells is ...:  # a day first seen: placed once, not once per value
            try:
                moment = datetime.strptime(day, "%Y-%m-%d")
            except ValueError:
                raise BackendError(
                    "POST /csv", 200, f"{query.indicator_id}: a date '{day}'"
                ) from None
            dt = backend_dt(moment)
            cells = values.datasets.setdefault(dt, {}) if grid.is_on_grid(moment) else None
            if cells is None:
                values.off_grid.append(dt)
            by_day[day] = cells
        if cells is not None:
            cells[units] = decimal_nanos(text, query)
    return values


def _from_floats(backend: Backend, query: QueryRange, grid: Grid) -> Values:
    values = Values()
    for date, cells in backend.dataset_content(query).items():
        try:
            dt = backend_dt(grid.parse_formatted(date))
        except DateError as error:
            raise BackendError("POST /query", 200, f"{query.indicator_id}: {error}") from None
        values.datasets[dt] = {units: value_nanos(v) for units, v in cells.items()}
        if any(abs(v) >= EXACT_FLOAT_BELOW for v in cells.values()):
            values.inexact.append(dt)
    return values


def decimal_nanos(text: str, query: QueryRange) -> int:
    """A stored DECIMAL's text (`544650.000000000`, `0E-9`) as exact nanos."""
    dot = text.find(".")
    if dot >= 0 and len(text) - dot == 10:  # 9 decimals, as MySQL prints DECIMAL(20,9)
        digits = text[:dot] + text[dot + 1 :]
        if digits.removeprefix("-").isdigit():
            return int(digits)
    try:
        return int((Decimal(text) * NANOS_PER_UNIT).to_integral_value())
    except InvalidOperation:
        raise BackendError("POST /csv", 200, f"{query.indicator_id}: a value '{text}'") from None


def granted_stretches(
    everything: Backend, reader: Backend, series: Series
) -> list[tuple[int, int]]:
    """The stretches of a series' dates (first index, count) that a scope's reader sees
    whole, found by halving: a stretch where the reader sees every mdid everything-seeing
    `everything` sees is granted as one; one it sees none of is not; else each half is
    asked. Two mdid reads per stretch asked, not one per date."""
    found: list[tuple[int, int]] = []

    def look(first: int, count: int) -> None:
        query = series.window(first, count)
        sees = reader.visible_mdids(query)
        if not sees:
            return
        if count == 1 or sees >= everything.visible_mdids(query):
            if found and sum(found[-1]) == first:  # adjoins the last one: one stretch
                found[-1] = (found[-1][0], found[-1][1] + count)
            else:
                found.append((first, count))
            return
        half = count // 2
        look(first, half)
        look(first + half, count - half)

    look(0, len(series.dates))
    return found
