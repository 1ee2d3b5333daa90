"""`status` (loader/inventory.py) through the public API: the example manifest applied to
its embedded database in a private copy, then read back per indicator and resolution
(dates, gaps, values, grants), offline and against the server, and a dataset deleted
behind the loader's back counted as vanished."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import loader
from loader.inventory import SeriesStatus, TargetStatus
from tests.manifests import copy_example, env_for

RESIDENTS = ("residents.arrived", "residents.residents", "residents.residents_perKm2")
MONTHS = ["2021-01", "2021-02", "2021-03", "2021-04", "2021-05", "2021-06"]
DAYS = [f"2021-03-{day:02d}" for day in range(1, 15)]


def applied(directory: Path, drop_month: str | None = None) -> Path:
    """The example copied and applied; without the CSV rows of `drop_month` if given."""
    manifest = copy_example(directory)
    if drop_month is not None:
        csv = manifest.parent / "example" / "data" / "residents_district_monthly.csv"
        lines = csv.read_text().splitlines(keepends=True)
        csv.write_text("".join(line for line in lines if not line.startswith(drop_month)))
    assert loader.apply(manifest, environ=env_for(manifest)).result.ok
    return manifest


def by_indicator(status: TargetStatus) -> dict[str, SeriesStatus]:
    return {s.indicator_id: s for s in status.series}


@pytest.mark.parametrize("offline", [False, True])
def test_a_full_apply_shows_every_series_without_gaps(tmp_path: Path, offline: bool) -> None:
    manifest = applied(tmp_path)
    found = loader.status(manifest, environ=env_for(manifest), offline=offline)
    assert found.target == "local"
    assert found.url == f"local:{manifest.parent / 'example.db'}"
    assert found.refreshed is (not offline)
    assert (found.entities, found.pending, found.another_writer) == (14, 0, "")
    assert found.last_apply is not None and found.last_apply.outcome == "complete"
    series = by_indicator(found)
    assert sorted(series) == [
        "movements.travellers", "movements.travellers_pctchangewithref", *RESIDENTS
    ]  # fmt: skip
    travellers = series["movements.travellers"]
    assert (travellers.srid, travellers.trid, travellers.dates) == (2, 4, DAYS)
    assert (travellers.gaps, travellers.values) == ([], 280)
    assert travellers.scopes == {"read:premium_data": 14}
    residents = series["residents.residents"]
    assert (residents.srid, residents.trid, residents.dates) == (2, 2, MONTHS)
    assert (residents.gaps, residents.values, residents.vanished) == ([], 46, 0)
    assert residents.scopes == {"read:free_data": 3, "read:premium_data": 6}
    assert series["residents.arrived"].values == 48


def test_a_month_missing_from_the_csv_is_a_gap(tmp_path: Path) -> None:
    manifest = applied(tmp_path, drop_month="2021-03")
    series = by_indicator(loader.status(manifest, environ=env_for(manifest)))
    for indicator in RESIDENTS:
        assert series[indicator].dates == [m for m in MONTHS if m != "2021-03"]
        assert series[indicator].gaps == ["2021-03"]
    assert series["residents.arrived"].values == 40
    assert series["residents.residents"].scopes == {"read:free_data": 2, "read:premium_data": 5}
    assert series["movements.travellers"].gaps == []


def test_a_dataset_deleted_behind_the_loaders_back_is_vanished_only_when_refreshed(
    tmp_path: Path,
) -> None:
    manifest = applied(tmp_path)
    record = json.loads((manifest.parent / ".flowkit" / "example.local.state.json").read_text())
    gone = next(d for d in record["datasets"] if d["indicator_id"] == "residents.arrived")
    with sqlite3.connect(manifest.parent / "example.db") as db:
        db.execute("DELETE FROM metadata WHERE mdid = ?", (gone["mdid"],))
    env = env_for(manifest)
    refreshed = by_indicator(loader.status(manifest, environ=env))
    assert refreshed["residents.arrived"].vanished == 1
    assert refreshed["residents.arrived"].dates == MONTHS  # the record still holds it
    assert all(s.vanished == 0 for name, s in refreshed.items() if name != "residents.arrived")
    offline = by_indicator(loader.status(manifest, environ=env, offline=True))
    assert offline["residents.arrived"].vanished == 0
