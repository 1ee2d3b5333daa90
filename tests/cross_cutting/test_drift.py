"""Planning against `serve` over HTTP: a deployment the notebook filled, taken over by
import; datasets and grants changed behind the loader's back, detected and repaired; and
what a no-change plan costs in requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.backends.local import LocalBackend
from loader.backends.store import Principal
from loader.cli import cli
from loader.model import QueryRange, Role
from tests.conftest import need_reference
from tests.manifests import upstream_manifest
from tests.proxying import proxy as loopback_proxy
from tests.serving import SECRET, SECRET_ENV, notebook_fills, remote, serving

GROUPS = 23  # (indicator, srid, trid) of the upstream synthetic data


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={SECRET_ENV: SECRET})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    need_reference()
    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        yield base


def test_import_takes_over_what_the_notebook_loaded(tmp_path: Path, server: str) -> None:
    notebook_fills(server)
    manifest = upstream_manifest(tmp_path, server, readers=True)
    code, output = run("plan", str(manifest))
    assert code == 0 and "another writer: 149 dataset(s) of the manifest on" in output
    assert "on the server are not in the state record" in output
    code, output = run("import", str(manifest))
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("datasets: 149 match and are recorded, 0 differ"), output
    assert "\ngrants read:free_data: 3 verified\n" in output
    assert "\ngrants read:premium_data: 12 verified\n" in output
    code, output = run("plan", str(manifest), "--detailed-exitcode")
    assert code == 0, output
    assert "unchanged: 38 config entities, 149 datasets, 15 grants" in output


def test_drift_is_detected_and_repaired(tmp_path: Path, server: str) -> None:
    manifest = upstream_manifest(tmp_path, server)
    code, output = run("apply", str(manifest), "--yes")
    assert code == 0, output
    state = json.loads((tmp_path / "served.state.json").read_text())
    by_date = {(d["indicator_id"], d["dt"]): d for d in state["datasets"]}
    patched = by_date[("residents.residents", "2020-02-01 00:00:00")]
    deleted = by_date[("residents.residents", "2020-05-01 00:00:00")]
    ungranted = by_date[("residents.residents", "2020-03-01 00:00:00")]
    assert patched["scopes"] == ["read:free_data", "read:premium_data"]

    # Behind the loader's back: a PATCH (new mdid, grants gone), a delete, a revoke.
    from loader.data import read_datasets
    from loader.validation import load_manifest

    loaded = load_manifest(manifest)
    spec = loaded.datasets[0]
    datasets = {d.key.dt: d for d in read_datasets(spec, spec.files[0], loaded.setup())[0]
                if d.key.indicator_id == "residents.residents"}  # fmt: skip
    other = remote(server, {Role.UPDATER: "dev-admin", Role.READER: "dev-admin"})
    new_mdid = other.update_dataset(datasets[patched["dt"]])
    other.delete_dataset(datasets[deleted["dt"]].summary)
    other.revoke("read:premium_data", ungranted["mdid"])
    other.close()

    code, output = run("plan", str(manifest), "--format", "json")
    plan = json.loads(output)
    changed = {(c["subject"], c["symbol"], c["reason"], c["key"]["dt"], c.get("scope"))
               for c in plan["changes"]}  # fmt: skip
    assert changed == {
        ("dataset", "~", "drifted", patched["dt"], None),
        ("grant", "+", "re-grant after update", patched["dt"], "read:free_data"),
        ("grant", "+", "re-grant after update", patched["dt"], "read:premium_data"),
        ("dataset", "~", "drifted", deleted["dt"], None),
        ("grant", "+", "re-grant after update", deleted["dt"], "read:premium_data"),
    }
    # The revoke cannot be seen with an admin token, and the plan says so.
    assert any("read:free_data, read:premium_data (configure a reader credential" in n
               for n in plan["notes"])  # fmt: skip
    assert any(
        "1 dataset(s) of residents.residents srid=3 trid=2 on the server are not in "
        "the state record" in n
        for n in plan["notes"]
    )  # the PATCHed one, new mdid

    # With a reader credential per scope, the missing grant shows.
    with_readers = upstream_manifest(tmp_path, server, readers=True)
    plan = json.loads(run("plan", str(with_readers), "--format", "json")[1])
    grants = [(c["reason"], c["key"]["dt"], c["scope"]) for c in plan["changes"]
              if c["subject"] == "grant" and c["reason"] == "drifted"]  # fmt: skip
    assert grants == [("drifted", ungranted["dt"], "read:premium_data")]

    code, output = run("apply", str(with_readers), "--yes")
    assert code == 0, output
    assert run("plan", str(with_readers), "--detailed-exitcode")[0] == 0
    # Repaired: every rule gives exactly its datasets to a reader holding only that scope.
    db = LocalBackend(tmp_path / "serve.db")
    for scope, count in (("read:free_data", 3), ("read:premium_data", 12)):
        reader = db.as_principal(Principal(frozenset({"read:free_data"}), frozenset({scope})))
        seen = set()
        for indicator in ("residents.residents", "residents.residents_perKm2"):
            seen |= reader.visible_mdids(QueryRange("residents", indicator, 3, 2, "2020-01", 12))
        assert len(seen) == count
    assert new_mdid not in {d["mdid"] for d in json.loads(
        (tmp_path / "served.state.json").read_text())["datasets"]}  # fmt: skip


def test_a_no_change_plan_reads_once_per_indicator_and_resolution(
    tmp_path: Path, server: str
) -> None:
    manifest = upstream_manifest(tmp_path, server)
    assert run("apply", str(manifest), "--yes")[0] == 0
    with loopback_proxy(server) as network:
        proxy, seen = network.url, network.seen
        through_proxy = upstream_manifest(tmp_path, proxy)
        # The same server behind a proxy: the record names the URL it was applied to.
        state = tmp_path / "served.state.json"
        state.write_text(state.read_text().replace(server, proxy))
        code, output = run("plan", str(through_proxy), "--detailed-exitcode")
    assert code == 0, output
    calls = [(method, path) for method, path in seen if path.startswith("/v1/")]
    assert all(method in ("GET", "POST") for method, _ in calls)
    assert [c for c in calls if c[0] == "GET"] == [("GET", "/v1/setup")]
    queries = [c for c in calls if c[1] == "/v1/query"]
    assert len(queries) == GROUPS and len(calls) == GROUPS + 1
