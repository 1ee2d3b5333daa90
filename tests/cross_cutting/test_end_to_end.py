"""End to end, on the embedded backend and on `serve --upstream-quirks` over HTTP: the
example manifest and upstream's synthetic data with the notebook's access rules are
applied; every dataset read back is the canonical one; each scope's reader sees exactly
the datasets its rules give; then nothing is left to plan, a second apply writes nothing,
and one changed value is one dataset write plus its re-grants (writes counted)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.backends.local import LocalBackend
from loader.backends.store import Principal
from loader.cli import cli
from loader.model import Backend, Role
from loader.record import groups
from loader.refresh import Grids, content_matches
from loader.run import open_run
from tests.conftest import ROOT, need_reference
from tests.helpers import RESIDENTS_SAMPLE, write_manifest
from tests.manifests import example_manifest, upstream_manifest
from tests.proxying import proxy as loopback_proxy
from tests.serving import SECRET, SECRET_ENV, remote, serving, started

READS = {"/v1/query", "/v1/csv"}  # POSTs that write nothing
# What the access rules give, counted by hand: the example's free rule takes three months
# of one indicator; its premium rules six months of three residents indicators and 14 days
# of two movements ones. Upstream: the notebook's rules (3 and 2 x 6 months).
GRANTED = {
    "example": {"read:free_data": 3, "read:premium_data": 3 * 6 + 2 * 14},
    "upstream": {"read:free_data": 3, "read:premium_data": 2 * 6},
}


def run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def writes(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(m, p) for m, p in seen
            if p.startswith("/v1/") and m != "GET" and p not in READS]  # fmt: skip


@contextmanager
def deployment(kind: str, which: str, directory: Path) -> Iterator[tuple[Path, dict[str, str],
                                                                         str | None]]:  # fmt: skip
    """(manifest, environment, server URL or None for the embedded backend)."""
    if which == "upstream":
        need_reference()
    if kind == "local":
        env = {"FLOWKIT_EXAMPLE_DB": str(directory / "local.db"),
               "FLOWKIT_UPSTREAM_DB": str(directory / "local.db")}  # fmt: skip
        if which == "example":
            shutil.copytree(ROOT / "manifests", directory / "manifests",
                            ignore=shutil.ignore_patterns(".flowkit"))  # fmt: skip
            yield directory / "manifests" / "example.yaml", env, None
        else:
            manifest = directory / "upstream.yaml"
            text = (ROOT / "tests" / "data" / "upstream" / "manifest.yaml").read_text()
            shared = str(ROOT.parent / "shared" / "reference" / "upstream-data")
            text = text.replace("../../../../shared/reference/upstream-data", shared)
            manifest.write_text(text)
            yield manifest, env, None
        return
    with serving(directory / "serve.db", "--upstream-quirks") as base:
        env = {SECRET_ENV: SECRET}
        if which == "example":
            yield example_manifest(directory, base), env, base
        else:
            yield upstream_manifest(directory, base), env, base


def readers(base: str | None, directory: Path, scopes: set[str]) -> dict[str, Backend]:
    """A backend per scope as a token holding only that scope's permission sees it."""
    if base is None:
        store = LocalBackend(directory / "local.db")
        return {s: store.as_principal(Principal(frozenset({"read:free_data"}), frozenset({s})))
                for s in scopes}  # fmt: skip
    clients = {"read:free_data": "dev-reader", "read:premium_data": "dev-premium"}
    return {s: remote(base, {Role.READER: clients[s]}) for s in scopes}


@pytest.mark.parametrize("kind", ["local", "serve"])
@pytest.mark.parametrize("which", ["example", "upstream"])
def test_apply_reads_back_exactly_and_then_writes_nothing(
    tmp_path: Path, kind: str, which: str
) -> None:
    with deployment(kind, which, tmp_path) as (manifest, env, base):
        code, output = run("apply", str(manifest), "--yes", "-q", env=env)
        assert code == 0, output
        loaded = open_run(manifest, environ={**os.environ, **env})
        desired, grids = loaded.desired, Grids(loaded.setup)
        admin = (LocalBackend(tmp_path / "local.db") if base is None
                 else remote(base, {Role.READER: "dev-admin"}))  # fmt: skip
        by_group = groups(desired.datasets)
        queries = {group: grids.query(keys) for group, keys in by_group.items()}
        contents = {group: admin.dataset_content(q) for group, q in queries.items() if q}
        checked = 0
        for dataset in loaded.datasets(set(desired.datasets)):
            key = dataset.key
            group = (key.category_id, key.indicator_id, key.srid, key.trid)
            cells = contents[group].get(grids.date(key))
            assert cells is not None and content_matches(dataset, cells), key
            checked += 1
        assert checked == len(desired.datasets)
        # Each scope's reader sees exactly the datasets its rules give it.
        scopes = {s for found in desired.scopes.values() for s in found}
        mdid = {k: d.mdid for k, d in loaded.record.datasets.items()}
        for scope, reader in readers(base, tmp_path, scopes).items():
            seen = set().union(*(reader.visible_mdids(q) for q in queries.values() if q))
            wanted = {mdid[k] for k, found in desired.scopes.items() if scope in found}
            assert seen == wanted, scope
            assert len(seen) == GRANTED[which][scope]  # counted from the rules by hand
        assert run("plan", str(manifest), "--detailed-exitcode", env=env)[0] == 0
        if base is None:
            return
        # Over HTTP, through a counting proxy: a second apply writes nothing ...
        with loopback_proxy(base) as network:
            proxy, seen = network.url, network.seen
            state = Path(loaded.store.location)
            state.write_text(state.read_text().replace(base, proxy))
            manifest.write_text(manifest.read_text().replace(base, proxy))
            code, output = run("apply", str(manifest), "--yes", env=env)
            assert (code, output) == (0, "No changes: the target matches the manifest.\n")
            assert writes(seen) == []
            if which != "example":
                return
            # ... and one changed value is one dataset write plus that dataset's re-grants.
            csv = manifest.parent / "example" / "data" / "residents_district_monthly.csv"
            csv.write_text(
                csv.read_text().replace("2021-02-01,EX01-01,", "2021-02-01,EX01-01,1", 1)
            )
            seen.clear()
            code, output = run("apply", str(manifest), "--yes", "-q", env=env)
            assert code == 0, output
            assert writes(seen) == [("PATCH", "/v1/data"), ("POST", "/v1/scope_mapping"),
                                    ("POST", "/v1/scope_mapping")]  # fmt: skip


def test_declining_the_confirmation_writes_nothing(tmp_path: Path) -> None:
    """On a terminal, apply shows the plan and asks; 'n' leaves the target untouched."""
    import subprocess
    import sys

    with deployment("local", "example", tmp_path) as (manifest, env, _):
        leader, follower = os.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "loader", "apply", str(manifest)],
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **env},
        )  # fmt: skip
        os.write(leader, b"n\n")
        out, err = process.communicate(timeout=120)
        os.close(follower)
        os.close(leader)
        assert process.returncode == 1, err
        text = out.decode()
        assert "Plan: 96 to create" in text and "Apply these changes? [y/N]" in text
        assert text.rstrip().endswith("Apply cancelled: nothing was written.")
        assert run("plan", str(manifest), "--detailed-exitcode", env=env)[0] == 2


def test_serves_banner_is_a_target_a_manifest_can_use_as_it_is(tmp_path: Path) -> None:
    """The target `serve` prints for itself, pasted under `targets:`, validates, plans,
    applies and plans nothing more; it names the secret's variable, never the secret."""
    with started(tmp_path / "served.db") as (_, base, lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("a manifest target"))
        end = next(i for i, line in enumerate(lines) if line.startswith("development clients"))
        target = "\n".join(lines[start + 1 : end])
        assert f"url: {base}/v1" in target and "${FLOWKIT_SERVE_SECRET}" in target
        assert SECRET not in "\n".join(lines)
        manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS_SAMPLE})
        text = manifest.read_text()
        manifest.write_text(text.replace("targets:\n  local: {url: 'local:state/test.db'}\n",
                                         f"targets:\n{target}\n"))  # fmt: skip
        env = {SECRET_ENV: SECRET}
        assert run("validate", str(manifest), env=env)[0] == 0
        code, output = run("apply", str(manifest), "--yes", env=env)
        assert code == 0 and "Apply complete: " in output and " 0 failed" in output, output
        assert run("plan", str(manifest), "--detailed-exitcode", env=env)[0] == 0


def test_init_reads_the_ids_a_server_shows_and_guesses_only_the_rest(tmp_path: Path) -> None:
    """A server whose District and Month hold data (srid 2, trid 2): init --from-target
    writes those as the server has them; Region and Day, which no visible dataset uses,
    come from the config's order, marked, and never take an id the server gave another."""
    with started(tmp_path / "served.db") as (_, base, lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("a manifest target"))
        end = next(i for i, line in enumerate(lines) if line.startswith("development clients"))
        served = tmp_path / "served"
        served.mkdir()
        manifest = write_manifest(served, {"residents.csv": RESIDENTS_SAMPLE})
        manifest.write_text(manifest.read_text().replace(
            "targets:\n  local: {url: 'local:state/test.db'}\n",
            "targets:\n" + "\n".join(lines[start + 1 : end]) + "\n"))  # fmt: skip
        env = {SECRET_ENV: SECRET}
        assert run("apply", str(manifest), "--yes", env=env)[0] == 0
        drafted = tmp_path / "drafted.yaml"
        code, output = run(
            "init", "--setup", str(served / "config.json"), str(served / "residents.csv"),
            "--out", str(drafted), "--from-target", f"{base}/v1",
            "--token-url", f"{base}/oauth/token", "--audience", "https://flowkit-ui-backend.local",
            "--client-id", "dev-admin", "--secret-env", SECRET_ENV, env=env,
        )  # fmt: skip
    assert code == 0 and "1 of 1 file placed, 2 ids to confirm" in output, output
    text = drafted.read_text()
    assert "  spatial_resolutions:\n    Region: 1  # confirm\n" \
        "    District: 2  # as the server has it\n" in text  # fmt: skip
    assert "  temporal_resolutions:\n    Month: 2  # as the server has it\n" \
        "    Day: 3  # confirm\n" in text  # fmt: skip
    assert SECRET not in text and SECRET not in output
