"""The embedded backend through the Backend protocol: the real service's semantics,
in-process. (The same behaviour over HTTP is pinned by the replay suite.)"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.backends.local import LocalBackend
from loader.backends.store import Principal
from loader.data import read_datasets
from loader.model import (
    BackendError,
    Dataset,
    DatasetKey,
    DatasetStats,
    DatasetSummary,
    EntityKind,
    QueryRange,
    ScopeError,
    nanos_to_float,
)
from loader.validate import validate
from tests.conftest import ROOT

READER = Principal(frozenset({"read:free_data"}), frozenset({"read:free_data"}), "reader")
UPDATER = Principal(frozenset({"write:data"}), frozenset(), "updater")


def example() -> tuple[dict[str, list[dict[str, object]]], list[Dataset]]:
    report = validate(ROOT / "manifests" / "example.yaml", data=False)
    assert report.manifest is not None
    setup = report.manifest.setup()
    config = {k.value: [dict(e.body) for e in setup.entities if e.kind is k] for k in EntityKind}
    datasets = []
    for spec in report.manifest.datasets:
        for file in spec.files:
            iterator, _ = read_datasets(spec, file, setup)
            datasets.extend(iterator)
    return config, datasets


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[LocalBackend, list[Dataset]]]:
    config, datasets = example()
    backend = LocalBackend(tmp_path / "local.db")
    backend.replace_setup(config)
    yield backend, datasets
    backend.store.close()


def month_range(indicator: str = "residents.residents", duration: int = 6) -> QueryRange:
    return QueryRange("residents", indicator, 2, 2, "2021-01", duration)


def test_setup_keeps_explicit_ids(loaded: tuple[LocalBackend, list[Dataset]]) -> None:
    backend, _ = loaded
    view = backend.read_setup()
    assert [(lang["lid"], lang["code"]) for lang in view.languages] == [(1, "en"), (2, "fr")]
    write = backend.create_entity(EntityKind.TEMPORAL_RESOLUTION, {"trid": 2, "label": "x",
                                  "index": 9, "relativedelta_unit": "days",
                                  "relativedelta_num": 1, "default_selected": 1})  # fmt: skip
    assert not write.created and write.stored["label"] == "Month"  # 303: the stored object
    assert write.stored["label_fr"] == "Mois"  # translations of existing languages are kept


def test_datasets_create_exist_update_and_visibility(
    loaded: tuple[LocalBackend, list[Dataset]],
) -> None:
    backend, datasets = loaded
    january = next(
        d for d in datasets if d.key.indicator_id == "residents.residents" and "01-01" in d.key.dt
    )
    first = backend.create_dataset(january)
    assert first.created
    again = backend.create_dataset(january)
    assert (again.created, again.mdid) == (False, first.mdid)  # 303: says nothing of content
    reader = backend.as_principal(READER)
    assert reader.visible_mdids(month_range()) == frozenset()  # only admin is mapped
    assert backend.grant("read:free_data", first.mdid)
    assert not backend.grant("read:free_data", first.mdid)  # 303
    assert reader.visible_mdids(month_range()) == {first.mdid}
    content = reader.dataset_content(month_range())
    assert content == {
        "2021-01": {
            unit: nanos_to_float(v) for unit, v in zip(january.units, january.values, strict=True)
        }
    }
    new_mdid = backend.update_dataset(january)
    assert new_mdid != first.mdid
    assert reader.visible_mdids(month_range()) == frozenset()  # Hazard 4: grants dropped
    assert backend.visible_mdids(month_range()) == {new_mdid}  # admin mapping is automatic
    backend.delete_dataset(january.summary)
    assert backend.visible_mdids(month_range()) == frozenset()


def test_scopes_are_checked_in_process(loaded: tuple[LocalBackend, list[Dataset]]) -> None:
    backend, datasets = loaded
    updater = backend.as_principal(UPDATER)
    with pytest.raises(ScopeError, match=r"Required permissions \['admin'\] not present"):
        updater.create_entity(EntityKind.CATEGORY, {"category_id": "x", "type": "flow"})
    with pytest.raises(ScopeError, match=r"POST /query: 401 .*'read:free_data'"):
        updater.visible_mdids(month_range())
    assert updater.create_dataset(datasets[0]).created
    with pytest.raises(ScopeError, match="write:data"):
        backend.as_principal(READER).create_dataset(datasets[1])


def test_an_empty_dataset_is_refused(loaded: tuple[LocalBackend, list[Dataset]]) -> None:
    backend, datasets = loaded
    empty = Dataset(datasets[0].summary, ([],), [])
    with pytest.raises(BackendError, match="POST /data: 400 No data to ingest"):
        backend.create_dataset(empty)


def test_values_are_stored_as_decimal_20_9(loaded: tuple[LocalBackend, list[Dataset]]) -> None:
    backend, _ = loaded
    key = DatasetKey("residents", "residents.arrived", 2, 2, "2021-01-01 00:00:00")
    summary = DatasetSummary(key, "single_location", "r", "-", DatasetStats(2, 0, 0, 0), "x")
    dataset = Dataset(summary, (["EX01-01", "EX01-02"],), [123456790, -1])
    backend.create_dataset(dataset)
    content = backend.dataset_content(month_range("residents.arrived", 1))
    assert content == {"2021-01": {("EX01-01",): 0.12345679, ("EX01-02",): -1e-9}}


# ---------------------------------------------------------------------------------------
# Eight writers on one file


def _writer(path: str, seed: int, datasets: list[Dataset], errors: multiprocessing.Queue) -> None:
    backend = LocalBackend(path)
    order = list(datasets)
    random.Random(seed).shuffle(order)
    try:
        for dataset in order:
            if random.Random(seed + len(dataset.values)).random() < 0.3:
                backend.update_dataset(dataset)
            else:
                backend.create_dataset(dataset)
    except Exception as error:  # reported to the parent, which fails the test
        errors.put(f"writer {seed}: {type(error).__name__}: {error}")


def test_eight_parallel_writers_on_one_file(tmp_path: Path) -> None:
    config, datasets = example()
    path = str(tmp_path / "shared.db")
    LocalBackend(path).replace_setup(config)
    context = multiprocessing.get_context("spawn")
    errors: multiprocessing.Queue = context.Queue()
    # Overlapping identities: every writer writes the same residents datasets, and half
    # of the movements ones, in its own order.
    residents = [d for d in datasets if d.key.category_id == "residents"]
    movements = [d for d in datasets if d.key.category_id == "movements"]
    workers = [
        context.Process(
            target=_writer,
            args=(path, seed, residents + movements[seed % 2 :: 2], errors),
        )
        for seed in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
        assert worker.exitcode == 0
    assert errors.empty(), errors.get()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    per_identity = db.execute(
        "SELECT COUNT(*) FROM metadata GROUP BY category_id, indicator_id, srid, trid, dt"
    ).fetchall()
    assert len(per_identity) == len(datasets)
    assert {count for (count,) in per_identity} == {1}
    values = db.execute("SELECT COUNT(*) FROM data").fetchone()[0]
    assert values == sum(len(d.values) for d in datasets)
