"""One writer per target: datasets another writer left on the server (two state records
applying at once, duplicates, data loaded by other means) are detected by plan, status
and apply, and apply writes nothing onto them. Against `serve --upstream-quirks`, whose
concurrent creates of one identity make duplicates as the real service's do."""

from __future__ import annotations

import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from loader import applying
from loader.cli import cli
from loader.data import read_datasets
from loader.validation import validate
from tests.manifests import example_manifest
from tests.proxying import proxy
from tests.serving import SECRET, SECRET_ENV, credential, serving

ENV = {SECRET_ENV: SECRET}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def duplicated_identities(db: Path) -> list[tuple[Any, ...]]:
    """Identities stored more than once, read from serve's own database."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT category_id, indicator_id, srid, trid, dt, COUNT(*) FROM metadata "
            "GROUP BY category_id, indicator_id, srid, trid, dt HAVING COUNT(*) > 1"
        ).fetchall()


def dataset_count(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        count: int = connection.execute("SELECT COUNT(*) FROM metadata").fetchone()[0]
    return count


def clone(directory: Path, base: str) -> Path:
    """A clone of the example deployment of its own (its own default state record)."""
    directory.mkdir()
    return example_manifest(directory, base)


def test_a_second_apply_with_another_state_record_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "serve.db"
    with serving(db, "--upstream-quirks") as base, proxy(base) as network, proxy(base) as other:
        network.hold = ("POST", "/v1/data", 5)  # the first apply, stopped mid-datasets
        first = clone(tmp_path / "a", network.url)
        second = clone(tmp_path / "b", other.url)
        done: dict[str, applying.Applied] = {}
        worker = threading.Thread(
            target=lambda: done.update(applied=applying.apply(first, environ=ENV))
        )
        worker.start()
        try:
            assert network.holding.wait(60), "the first apply never reached its 5th dataset"
            code, output = run("apply", str(second), "--yes", "-q")
            assert code == 1, output
            line = output.splitlines()[-1]
            assert re.match(
                r"error: another writer: \d+ datasets of the manifest on the server that no "
                r"apply of this record wrote \(",
                line,
            ), line
            assert "`import` takes over data loaded by other means" in line
            assert "give every apply of this target the same one; nothing was written" in line
            reads = {("POST", "/oauth/token"), ("POST", "/v1/query"), ("GET", "/v1/setup"),
                     ("GET", "/v1/heartbeat")}  # fmt: skip
            assert set(other.seen) <= reads, other.seen
            assert not list((tmp_path / "b").glob("*.state.json"))
            code, output = run("status", str(second))
            assert code == 0 and "  another writer: " in output, output
        finally:
            network.release.set()
            worker.join(timeout=300)
        assert done["applied"].result.ok, done["applied"].result
    assert duplicated_identities(db) == []


def race_duplicates(base: str, manifest: Path) -> tuple[str, ...]:
    """Five concurrent creates of one identity at a time (deleted first if it is there),
    until the server keeps two: what a second writer racing the first does."""
    from loader.backends.auth import TokenProvider
    from loader.backends.remote import RemoteBackend, dataset_body
    from loader.model import Role

    report = validate(manifest)
    assert report.manifest is not None
    setup = report.manifest.setup()
    token = TokenProvider(credential(base, "dev-admin"), environ=ENV).current().value
    providers = {role: TokenProvider(credential(base, "dev-admin"), environ=ENV) for role in Role}
    formats = {r.trid: r.date_format for r in setup.temporal.values()}
    plain = RemoteBackend(f"{base}/v1", providers, date_formats=formats)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    spec = report.manifest.datasets[0]
    datasets, _ = read_datasets(spec, spec.files[0], setup)
    for dataset in datasets:
        if plain.visible_mdids(plain.exact_range(dataset.key)):
            plain.delete_dataset(dataset.summary)  # a create of an identity there is a 303
        body = dataset_body(dataset)
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda b: httpx.post(f"{base}/v1/data", content=b, headers=headers,
                                               timeout=30), [body] * 5))  # fmt: skip
        if len(plain.visible_mdids(plain.exact_range(dataset.key))) > 1:
            plain.close()
            return (dataset.key.indicator_id, dataset.key.dt)
    pytest.fail("the race never produced duplicates")


def test_duplicates_are_shown_by_plan_and_status_and_stop_apply(tmp_path: Path) -> None:
    db = tmp_path / "serve.db"
    with serving(db, "--upstream-quirks") as base:
        manifest = example_manifest(tmp_path, base)
        assert run("apply", str(manifest), "--yes", "-q")[0] == 0
        indicator, dt = race_duplicates(base, manifest)
        assert duplicated_identities(db)
        code, output = run("plan", str(manifest))
        assert code == 0
        assert "note: another writer: 1 identity is on the server more than once (" in output
        assert indicator in output and dt in output
        code, output = run("status", str(manifest))
        assert "  another writer: 1 identity is on the server more than once" in output
        before = dataset_count(db)
        code, output = run("apply", str(manifest), "--yes", "-q")
        assert code == 1
        line = output.splitlines()[-1]
        assert line.startswith("error: another writer: 1 identity is on the server more "
                               "than once (")  # fmt: skip
        assert "only database access can remove all but one)" in line
        assert dataset_count(db) == before


def test_the_end_of_an_apply_sees_a_writer_that_started_with_it(tmp_path: Path) -> None:
    """The second writer made its duplicate while the apply ran: the apply's summary says
    so at its end, and it exits 1."""
    db = tmp_path / "serve.db"
    with serving(db, "--upstream-quirks") as base, proxy(base) as network:
        manifest = example_manifest(tmp_path, network.url)
        network.hold = ("POST", "/v1/data", 30)
        done: dict[str, applying.Applied] = {}
        worker = threading.Thread(
            target=lambda: done.update(applied=applying.apply(manifest, environ=ENV))
        )
        worker.start()
        try:
            assert network.holding.wait(60)
            race_duplicates(base, manifest)
        finally:
            network.release.set()
            worker.join(timeout=300)
        result = done["applied"].result
        assert not result.ok
        assert result.others.startswith(
            "another writer: 1 identity is on the server more than once ("
        ), result.others


def test_data_loaded_by_other_means_is_imported_not_overwritten(tmp_path: Path) -> None:
    from tests.manifests import upstream_manifest
    from tests.serving import notebook_fills

    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        notebook_fills(base)
        manifest = upstream_manifest(tmp_path, base, readers=True)
        code, output = run("apply", str(manifest), "--yes", "-q")
        assert code == 1
        assert output.splitlines()[-1].startswith(
            "error: another writer: 149 datasets of the manifest on the server that no apply "
            "of this record wrote ("
        ), output
        assert run("import", str(manifest))[0] == 0
        code, output = run("plan", str(manifest), "--detailed-exitcode")
        assert code == 0 and "another writer" not in output, output
