"""The example deployment brought to where a scenario's apply starts (nothing yet, one
column changed, a file removed), and the check that a backend holds exactly the desired
state afterwards: shared by the crash and the disk-fault suites."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path

from loader.backends.local import LocalBackend
from loader.record import groups
from loader.refresh import Grids, content_matches
from loader.run import open_run
from tests.helpers import cli_run, edit_column
from tests.manifests import copy_example

SCENARIOS = ("fresh", "update", "remove")


def prepared(directory: Path, scenario: str) -> tuple[Path, dict[str, str]]:
    """The example manifest in `directory`, brought to the point where the scenario's
    apply starts: nothing yet (fresh), applied then one column changed (update: six
    PATCHes, each with its re-grant), applied then a file removed (remove: 28 deletes)."""
    manifest = copy_example(directory)
    env = {"FLOWKIT_EXAMPLE_DB": str(directory / "example.db")}
    if scenario == "fresh":
        return manifest, env
    assert cli_run("apply", str(manifest), "--yes", env=env)[0] == 0
    if scenario == "update":
        csv = manifest.parent / "example" / "data" / "residents_district_monthly.csv"
        edit_column(csv, "arrived", lambda value: value + 1)
    else:
        text = manifest.read_text()
        start = text.index("  - file: example/data/movements_district_daily.csv")
        manifest.write_text(text[:start] + text[text.index("access:") :])
    return manifest, env


def assert_exactly_desired(manifest: Path, env: dict[str, str], db: Path) -> None:
    run = open_run(manifest, environ={**os.environ, **env})
    desired = run.desired
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT category_id, indicator_id, srid, trid, dt, mdid FROM metadata"
        ).fetchall()
        mappings = connection.execute("SELECT scope, mdid FROM scope_mapping").fetchall()
    identities = Counter(tuple(row[:5]) for row in rows)
    assert [i for i, n in identities.items() if n > 1] == []  # no duplicate dataset
    wanted = {(k.category_id, k.indicator_id, k.srid, k.trid, k.dt) for k in desired.datasets}
    assert set(identities) == wanted
    mdid_of = {tuple(row[:5]): row[5] for row in rows}
    scopes_of: dict[int, set[str]] = {}
    for scope, mdid in mappings:
        scopes_of.setdefault(mdid, set()).add(scope)
    for key in desired.datasets:
        mdid = mdid_of[(key.category_id, key.indicator_id, key.srid, key.trid, key.dt)]
        granted = scopes_of.get(mdid, set())
        assert "admin" in granted, key
        assert granted - {"admin"} == set(desired.scopes.get(key, ())), key
    # Every value is the manifest's.
    backend = LocalBackend(db)
    grids = Grids(run.setup)
    contents = {}
    for group, keys in groups(desired.datasets).items():
        query = grids.query(keys)
        assert query is not None
        contents[group] = backend.dataset_content(query)
    for dataset in run.datasets(set(desired.datasets)):
        group = (dataset.key.category_id, dataset.key.indicator_id, dataset.key.srid,
                 dataset.key.trid)  # fmt: skip
        cells = contents[group].get(grids.date(dataset.key))
        assert cells is not None and content_matches(dataset, cells), dataset.key
    # The record agrees, and the plan finds nothing to do.
    assert {d.mdid for d in run.record.datasets.values()} == set(mdid_of.values())
    code, output = cli_run("plan", str(manifest), "--detailed-exitcode", env=env)
    assert code == 0, output
