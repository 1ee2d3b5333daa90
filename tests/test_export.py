"""`export` on the embedded backend: grants found as stretches of dates, values carried
digit for digit (Parquet decimals where a CSV's floats would lose them), what cannot be
carried named and refused without --partial, and the folder rules (empty, or the same
source's unfinished export)."""

from __future__ import annotations

import json
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.backends import factory
from loader.backends.local import AbsentBackend
from loader.backends.store import Incoming, Store
from loader.model import MAX_ABS_VALUE, NANOS_PER_UNIT, BackendError, EntityKind
from loader.validation import validate
from tests.helpers import cli_run, without_package
from tests.manifests import CONFIG, EVERYONE, deployment, put


def stored(db: Path) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Identity -> (units, nanos, scopes) of every dataset of a database."""
    found = {}
    with Store(str(db)).connection() as connection:
        for mdid, *identity in connection.execute(
            "SELECT mdid, indicator_id, srid, trid, dt FROM metadata"
        ):
            units, nanos = connection.execute(
                "SELECT d.units, d.nanos FROM data d JOIN metadata m ON d.row_id = m.id "
                "WHERE m.mdid = ?", (mdid,)).fetchone()  # fmt: skip
            values = array("q")
            values.frombytes(nanos)
            scopes = sorted(row[0] for row in connection.execute(
                "SELECT scope FROM scope_mapping WHERE mdid = ?", (mdid,)))  # fmt: skip
            found[tuple(identity)] = (tuple(json.loads(units)), tuple(values), tuple(scopes))
    return found


def test_an_export_carries_values_digit_for_digit_and_grants_as_stretches(tmp_path: Path) -> None:
    store, manifest = deployment(tmp_path)
    put(store, "2021-01-01 00:00:00", {"D1": 1200 * NANOS_PER_UNIT, "D2": 1}, EVERYONE)
    put(store, "2021-02-01 00:00:00", {"D1": -5}, EVERYONE)
    # 2021-03 is a gap
    put(store, "2021-04-01 00:00:00", {"D2": 2147483646_123456789}, ("read:premium_data",))
    put(store, "2021-05-15 00:00:00", {"D1": 7})  # off the month's grid
    put(store, "2021-06-01 00:00:00", {"ZZ": 7})  # a unit its boundaries lack
    code, output = cli_run("export", str(manifest), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "1 dataset dated off their resolution's grid" in output
    assert "1 dataset holding unit codes their resolution's boundaries lack" in output
    code, output = cli_run("export", str(manifest), "--out", str(tmp_path / "out"), "--partial")
    assert code == 0, output
    out = tmp_path / "out"
    # A CSV read back as floats would lose the 19-digit value: the series goes as Parquet.
    assert [p.name for p in (out / "data" / "residents").iterdir()] == [
        "residents.residents.srid1.trid1.parquet"
    ]
    text = (out / "deploy.yaml").read_text()
    assert (
        "  read:free_data:\n    - {indicator: residents.residents, spatial_resolution: 1, "
        'temporal_resolution: 1, start: "2021-01", duration: 3}\n'  # 2021-03: a gap
    ) in text
    assert (
        "  read:premium_data:\n    - {indicator: residents.residents, spatial_resolution: 1, "
        'temporal_resolution: 1, start: "2021-01", duration: 4}\n'
    ) in text
    assert "unit_properties:\n  District: pcod\n" in text
    assert validate(out / "deploy.yaml").ok
    code, output = cli_run("apply", str(out / "deploy.yaml"), "--yes")
    assert code == 0, output
    source, copy = stored(tmp_path / "source.db"), stored(out / ".flowkit" / "exported.db")
    left_out = {("residents.residents", 1, 1, "2021-05-15 00:00:00"),
                ("residents.residents", 1, 1, "2021-06-01 00:00:00")}  # fmt: skip
    assert {k: v for k, v in source.items() if k not in left_out} == copy
    assert copy[("residents.residents", 1, 1, "2021-04-01 00:00:00")][1] == (2147483646_123456789,)


def test_without_pyarrow_values_a_csv_cannot_carry_are_named(tmp_path: Path) -> None:
    store, manifest = deployment(tmp_path)
    put(store, "2021-01-01 00:00:00", {"D1": 2147483646_123456789}, EVERYONE)
    printed = without_package("pyarrow", (
        "from loader.export import export, PartialExport\n"
        "try:\n"
        f"    export({str(manifest)!r}, {str(tmp_path / 'out')!r})\n"
        "except PartialExport as error:\n"
        "    print(error)\n"
    ))  # fmt: skip
    assert "1 series hold values a CSV cannot carry exactly" in printed
    assert "install flowkit-loader[parquet]" in printed


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(-MAX_ABS_VALUE * NANOS_PER_UNIT, MAX_ABS_VALUE * NANOS_PER_UNIT),
                min_size=1, max_size=2))  # fmt: skip
def test_any_stored_value_comes_back_exactly(tmp_path_factory: Any, values: list[int]) -> None:
    directory = tmp_path_factory.mktemp("values")
    store, manifest = deployment(directory)
    put(store, "2021-01-01 00:00:00", dict(zip(("D1", "D2"), values, strict=False)), EVERYONE)
    code, output = cli_run("export", str(manifest), "--out", str(directory / "out"))
    assert code == 0, output
    code, output = cli_run("apply", str(directory / "out" / "deploy.yaml"), "--yes")
    assert code == 0, output
    assert stored(directory / "source.db") == stored(directory / "out/.flowkit/exported.db")


def test_an_export_starts_only_in_an_empty_folder_or_goes_on_with_its_own(tmp_path: Path) -> None:
    store, manifest = deployment(tmp_path)
    # An empty backend has nothing to export, and leaves nothing behind.
    code, output = cli_run("export", str(manifest), "--out", str(tmp_path / "out"))
    assert code == 1 and "the service shows no dataset to export" in output
    assert not (tmp_path / "out").exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = cli_run("export", str(manifest), "--out", str(out))
    assert (code, output.strip()) == (
        1, f"error: {out} exists and is not an empty folder: choose another --out"
    )  # fmt: skip
    # Refused for want of --partial, the export is kept for its own source only.
    put(store, "2021-05-15 00:00:00", {"D1": 7})
    code, output = cli_run("export", str(manifest), "--out", str(tmp_path / "kept"))
    assert code == 1 and "--partial" in output
    # Alone on its date, past the last one the service's range reaches: no window holds it.
    assert "1 dataset no window of dates could read" in output
    other = tmp_path / "other.yaml"
    other.write_text(manifest.read_text().replace("local:source.db", "local:other.db"))
    code, output = cli_run("export", str(other), "--out", str(tmp_path / "kept"))
    assert code == 1 and "holds an unfinished export of local:" in output
    assert "choose another --out or remove it" in output
    code, output = cli_run("export", str(manifest), "--out", str(tmp_path / "kept"), "--partial")
    assert code == 0 and "went on from an earlier run (1 window of dates already read)" in output


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(("found.json", "values/0-0.json")), st.binary(max_size=60))
def test_a_damaged_work_folder_is_one_line_naming_it(
    tmp_path_factory: Any, name: str, garbage: bytes
) -> None:
    directory = tmp_path_factory.mktemp("damaged")
    store, manifest = deployment(directory)
    put(store, "2021-01-01 00:00:00", {"D1": 1}, EVERYONE)
    put(store, "2021-05-15 00:00:00", {"D1": 7})  # refused without --partial: the work stays
    out = directory / "out"
    assert cli_run("export", str(manifest), "--out", str(out))[0] == 1
    (out / ".export" / name).write_bytes(garbage)
    code, output = cli_run("export", str(manifest), "--out", str(out), "--partial")
    assert code == 1
    (line,) = [x for x in output.splitlines() if x != "reading"]  # the bar had begun
    assert line.startswith(f"error: {out / '.export' / name}: damaged (")
    assert line.endswith(f"remove {out / '.export'} to start the export over")


def test_ids_that_are_no_file_names_stay_inside_the_folder(tmp_path: Path) -> None:
    store, manifest = deployment(tmp_path)
    odd = "residents/../../outside"
    indicator = {**CONFIG["indicators"][0], "indicator_id": odd, "order": 2}
    assert store.post_entity(EntityKind.INDICATOR, indicator).status == 201
    reply = store.write_dataset(Incoming(
        {"revision": "x", "category_id": "residents", "indicator_id": odd, "srid": 1,
         "trid": 1, "dt": "2021-01-01 00:00:00"}, "single_location", ["D1"], [None], [5]),
        replace=False)  # fmt: skip
    assert reply.status == 201
    put(store, "2021-01-01 00:00:00", {"D2": 6})
    out = tmp_path / "out"
    code, output = cli_run("export", str(manifest), "--out", str(out))
    assert code == 0, output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv")) == [
        "data/residents/residents.residents.srid1.trid1.csv",
        "data/residents/residents_.._.._outside~1.srid1.trid1.csv",
    ]
    assert not (tmp_path / "outside.srid1.trid1.csv").exists()
    code, output = cli_run("apply", str(out / "deploy.yaml"), "--yes")
    assert code == 0, output
    assert stored(tmp_path / "source.db") == stored(out / ".flowkit" / "exported.db")


class _Failing(AbsentBackend):
    """A service that answers GET /setup and then fails: a fake backend kind."""

    def list_entities(self, kind: EntityKind) -> tuple[Mapping[str, Any], ...]:
        raise BackendError(f"GET /{kind.value}", 502, "Bad Gateway")


def test_a_failure_before_anything_is_read_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = factory.BackendKind("failing:NAME", r"failing:\w+",
                               lambda target, setup, opening: _Failing(target.url),
                               needs_credentials=False)  # fmt: skip
    monkeypatch.setitem(factory.KINDS, "failing", kind)
    _, manifest = deployment(tmp_path)
    aimed = tmp_path / "failing.yaml"
    aimed.write_text(manifest.read_text().replace("local:source.db", "failing:here"))
    out = tmp_path / "out"
    code, output = cli_run("export", str(aimed), "--out", str(out))
    assert (code, output) == (1, "error: GET /categories: 502 Bad Gateway\n")
    assert not out.exists()  # no work folder to go on with: it found nothing
