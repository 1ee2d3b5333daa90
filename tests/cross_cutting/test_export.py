"""`export` against `serve` over HTTP: a deployment the notebook filled, with a category
that is not built in, a value with 9 decimals near the DECIMAL(20,9) limit and config
without data, read back, applied to a fresh server and compared table by table; what
could not be carried is named; an export stopped by Ctrl-C goes on where it stopped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from loader.backends.auth import TokenProvider
from loader.cli import cli
from loader.validation import validate
from tests.conftest import ROOT, need_reference
from tests.manifests import upstream_manifest
from tests.proxying import proxy
from tests.serving import SECRET, SECRET_ENV, credential, notebook_fills, serving

ENV = {SECRET_ENV: SECRET}
NEAR_LIMIT = "2147483646.123456789"  # 19 digits; JSON makes it a float, which keeps 17
BIG_QUERIED = 12345678.123456789  # not built in: read as a float, past 2**22


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def send(base: str, method: str, path: str, body: Any, content: str = "") -> httpx.Response:
    """One call as the admin; `content`, when given, is the body's text as sent."""
    token = TokenProvider(credential(base, "dev-admin"), environ=ENV).current().value
    content = content or json.dumps(body)
    return httpx.request(method, f"{base}/v1{path}", content=content, timeout=30,
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})  # fmt: skip


def dataset(category: str, indicator: str, dt: str, cells: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"revision": "by-hand", "category_id": category, "indicator_id": indicator,
                     "srid": 3, "trid": 2, "dt": dt, "date_added": "2026-12-01 00:00:00"},
        "data_type": "single_location",
        "data_input": [{"spatial_unit_ids": [unit], "data": v} for unit, v in cells.items()],
    }  # fmt: skip


def add_by_hand(base: str) -> None:
    """What the notebook never made: a category the service's /csv does not know, with a
    granted dataset, and a residents value near the limit."""
    category = {"category_id": "connectivity", "type": "single_location", "order": 9,
                "flowgeek_url": "https://example.org", "label": "Connectivity",
                "description": "Calls placed."}  # fmt: skip
    indicator = {"category_id": "connectivity", "indicator_id": "connectivity.calls",
                 "order": 1, "flowgeek_url": "https://example.org", "label": "Calls",
                 "description": "Calls.", "method": "A count.", "unit": "calls",
                 "num_decimals": 9, "scale_type": "linear", "hatching": False,
                 "data_type": "single_location"}  # fmt: skip
    assert send(base, "POST", "/categories", category).status_code == 201
    assert send(base, "POST", "/indicators", indicator).status_code == 201
    calls = {"HT0111-01": 0.123456789, "HT0111-02": -3.000000001, "HT0111-03": BIG_QUERIED}
    answer = send(
        base,
        "POST",
        "/data",
        dataset("connectivity", "connectivity.calls", "2020-03-01 00:00:00", calls),
    )
    assert answer.status_code == 201
    assert (
        send(
            base, "POST", "/scope_mapping", {"scope": "read:free_data", "mdid": answer.json()}
        ).status_code
        == 201
    )
    body = dataset("residents", "residents.residents", "2020-08-01 00:00:00", {"HT0111-01": 0})
    text = json.dumps(body).replace('"data": 0', f'"data": {NEAR_LIMIT}')  # its digits as written
    assert send(base, "POST", "/data", None, text).status_code == 201


def contents(db: Path) -> dict[str, Any]:
    """A database's config, datasets (identity -> values and their statistics) and grants
    (scope, identity): what an export must reproduce; revisions and dates added it cannot."""
    with sqlite3.connect(db) as connection:
        entities = {(kind, key): json.loads(body) for kind, key, body
                    in connection.execute("SELECT kind, key, body FROM entity")}  # fmt: skip
        identity, datasets = {}, {}
        for row in connection.execute(
            "SELECT m.mdid, m.category_id, m.indicator_id, m.srid, m.trid, m.dt, m.data_type, "
            "m.min_value, m.max_value, d.count, d.units, d.destinations, d.nanos "
            "FROM metadata m JOIN data d ON d.row_id = m.id"
        ):
            identity[row[0]] = tuple(row[1:6])
            datasets[tuple(row[1:6])] = row[6:]
        grants = sorted((scope, identity[mdid]) for scope, mdid
                        in connection.execute("SELECT scope, mdid FROM scope_mapping"))  # fmt: skip
    return {"entities": entities, "datasets": datasets, "grants": grants}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One deployment for the module's tests (export only reads it)."""
    need_reference()
    where = tmp_path_factory.mktemp("filled")
    with serving(where / "serve.db", "--upstream-quirks") as base:
        notebook_fills(base)
        add_by_hand(base)
        yield base, upstream_manifest(where, base, readers=True)


def test_an_export_applied_to_a_fresh_server_reproduces_the_deployment(
    tmp_path: Path, filled: tuple[str, Path]
) -> None:
    _, manifest = filled
    out = tmp_path / "copy"
    code, output = run("export", str(manifest), "--out", str(out))
    assert code == 1
    # Refused, naming what this deployment holds that cannot be carried ...
    assert "spatial resolutions of the manifest's config not shown by the service" in output
    assert "Commune, Department" in output and "Week, Year" in output
    assert "1 dataset whose values, read through /query, may have lost digits" in output
    assert "connectivity.calls srid=3 trid=2" in output
    assert not (out / "deploy.yaml").exists()
    # ... and written with --partial, from what the first run read.
    code, output = run("export", str(manifest), "--out", str(out), "--partial")
    assert code == 0, output
    assert "exported 151 datasets of 24 series" in output
    assert "went on from an earlier run (24 windows of dates already read)" in output
    manifest_text = (out / "deploy.yaml").read_text()
    for said in ("revisions: the service never answers them", "date_added: never answered",
                 "config without a visible dataset", "Commune, Department",
                 "may have lost digits", "grants: scope mappings cannot be listed"):  # fmt: skip
        assert said in manifest_text and said in output
    assert not (out / ".export").exists()
    report = validate(out / "deploy.yaml")
    assert report.ok, [str(p) for p in report.problems]

    copy = tmp_path / "fresh.db"
    with serving(copy) as fresh:
        text = manifest_text.replace("local:.flowkit/exported.db", f"{fresh}/v1")
        target = (
            f"    url: {fresh}/v1\n    auth: {{token_url: '{fresh}/oauth/token', "
            "audience: 'https://flowkit-ui-backend.local'}\n"
            f"    credentials:\n      all: {{client_id: dev-admin, client_secret: "
            f"'${{{SECRET_ENV}}}'}}\n"
        )
        aimed = out / "aimed.yaml"
        aimed.write_text(text.replace(f"    url: {fresh}/v1\n", target))
        code, output = run("apply", str(aimed), "--yes")
        assert code == 0, output
    source, copied = contents(manifest.parent / "serve.db"), contents(copy)
    assert copied["datasets"] == source["datasets"]  # the values digit for digit
    assert copied["grants"] == source["grants"]
    never_shown = {("spatial_resolutions", "1"), ("spatial_resolutions", "2"),
                   ("temporal_resolutions", "1"), ("temporal_resolutions", "3")}  # fmt: skip
    assert set(source["entities"]) - set(copied["entities"]) == never_shown
    assert {k: source["entities"][k] for k in copied["entities"]} == copied["entities"]
    near = copied["datasets"][("residents", "residents.residents", 3, 2, "2020-08-01 00:00:00")]
    stored = array("q")
    stored.frombytes(near[-1])
    assert list(stored) == [2147483646_123456700]  # the 17 digits the server's float kept


def test_an_interrupted_export_goes_on_where_it_stopped(
    tmp_path: Path, filled: tuple[str, Path]
) -> None:
    base, manifest = filled
    out = tmp_path / "copy"
    with proxy(base) as cut:
        aimed = tmp_path / "proxied.yaml"
        aimed.write_text(manifest.read_text().replace(f"url: {base}/v1", f"url: {cut.url}/v1"))
        cut.hold = ("POST", "/v1/csv", 10)  # the tenth window's values wait
        export = subprocess.Popen(
            [sys.executable, "-m", "loader", "export", str(aimed), "--out", str(out),
             "--parallelism", "1"],
            cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert cut.holding.wait(120), "the export never reached its tenth window"
            export.send_signal(signal.SIGINT)
            time.sleep(0.5)  # the signal lands while the read is held
            cut.release.set()
            _, stderr = export.communicate(timeout=120)
        finally:
            if export.poll() is None:
                export.kill()
                export.wait(timeout=30)
        assert export.returncode == 130, stderr
        assert "Traceback" not in stderr
        read = len(list((out / ".export" / "values").iterdir()))
        assert read in (10, 11)  # nine, the one held (it ends on the way out), maybe /query's
        cut.hold = None
        before = len(cut.seen)
        code, output = run("export", str(aimed), "--out", str(out), "--partial")
        assert code == 0, output
        assert f"went on from an earlier run ({read} windows of dates already read)" in output
        assert "exported 151 datasets of 24 series" in output
        # Only what was not read before is read: 23 windows of built-in categories, 10 done.
        assert sum(1 for _, path in cut.seen[before:] if path.endswith("/csv")) == 13


def test_scopes_without_a_reader_are_named_and_their_grants_left_out(
    tmp_path: Path, filled: tuple[str, Path]
) -> None:
    base, _ = filled
    manifest = upstream_manifest(tmp_path, base)  # no credentials.scopes
    out = tmp_path / "copy"
    code, output = run("export", str(manifest), "--out", str(out))
    assert code == 1
    for scope in ("read:free_data", "read:premium_data"):
        assert f"{scope}: the manifest names it but gives no reader credential of it" in output
    code, output = run("export", str(manifest), "--out", str(out), "--partial")
    assert code == 0, output
    assert "(rules per scope: none)" in output
    assert "grants: scope mappings cannot be listed; none was read" in output
    assert "access:" not in (out / "deploy.yaml").read_text()
