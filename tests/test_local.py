"""The embedded backend under concurrent writers. (Its semantics through the Backend
protocol are in test_conformance.py; over HTTP, in the replay suite.)"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path

from loader.backends.local import LocalBackend
from loader.model import Dataset
from tests.helpers import example

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
    values = LocalBackend(path).store.value_count()
    assert values == sum(len(d.values) for d in datasets)
