"""Crash tests: an apply killed (SIGKILL) at seeded points — right after a server success
and before its journal line, between a PATCH and its re-grant, during a fresh
deployment's setup, halfway through a journal line — then run again. Afterwards the
backend holds exactly the desired state: each dataset once with the manifest's values,
each scope granted exactly its datasets, and a plan finds nothing to do."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loader import applying
from loader.execute import DEFAULT_PARALLELISM
from tests.conftest import ROOT
from tests.scenarios import SCENARIOS, assert_exactly_desired, cli_run, prepared
from tests.serving import SECRET, SECRET_ENV, serving

# How many calls of each kind each scenario makes (the example manifest): a kill point
# beyond them would never fire.
CALLS = {
    "fresh": {"replace_setup": 1, "create_dataset": 46, "grant": 49, "journal": 96},
    "update": {"update_dataset": 6, "grant": 6, "journal": 12},
    "remove": {"delete_dataset": 28, "journal": 28},
}


def crash(manifest: Path, env: dict[str, str], point: str) -> None:
    """Apply, killed at `point` (which must be reached)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.crashing", point, "apply", str(manifest), "--yes",
         "--allow-destroy", "-q"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == -9, f"{point} never fired: {done.stdout}{done.stderr}"


class Resent:
    """Counts, during a rerun, the dataset creates that met a dataset already there: the
    writes the killed run had made without journaling them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.existing = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_dataset(self, dataset: Any) -> Any:
        write = self.inner.create_dataset(dataset)
        self.existing += not write.created
        return write


def crash_and_resume(directory: Path, scenario: str, point: str) -> None:
    manifest, env = prepared(directory, scenario)
    crash(manifest, env, point)
    connect = applying.connect
    counted: list[Resent] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        connection = connect(*args, **kwargs)
        connection.backend = Resent(connection.backend)
        counted.append(connection.backend)
        return connection

    applying.connect = counting  # type: ignore[assignment]
    try:
        code, output = cli_run("apply", str(manifest), "--yes", "--allow-destroy", env=env)
    finally:
        applying.connect = connect  # type: ignore[assignment]
    assert code == 0, f"{point}: {output}"
    # Only what was in flight at the kill (at most one per worker) is sent again.
    assert sum(c.existing for c in counted) <= DEFAULT_PARALLELISM, point
    assert_exactly_desired(manifest, env, directory / "example.db")


@pytest.mark.parametrize(
    ("scenario", "point"),
    [
        ("fresh", "after:replace_setup:1"),  # the setup posted, never journaled
        ("fresh", "after:create_dataset:10"),  # a success the journal never heard of
        ("update", "after:update_dataset:3"),  # between a PATCH and its re-grant
        ("fresh", "journal:40"),  # a torn journal line
        ("update", "fold"),  # the record written, its journal left behind
    ],
)
def test_a_killed_apply_resumes_to_exactly_the_desired_state(
    tmp_path: Path, scenario: str, point: str
) -> None:
    crash_and_resume(tmp_path, scenario, point)


def seeded_points(seed: int, count: int) -> list[tuple[str, str]]:
    chooser = random.Random(seed)
    points = []
    for _ in range(count):
        scenario = chooser.choice(SCENARIOS)
        call, most = chooser.choice(sorted(CALLS[scenario].items()))
        n = chooser.randint(1, most)
        if call == "journal":
            points.append((scenario, f"journal:{n}"))
        else:
            points.append((scenario, f"{chooser.choice(('before', 'during', 'after'))}:{call}:{n}"))
    return points


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "point"), seeded_points(seed=20261128, count=24))
def test_seeded_kill_points(tmp_path: Path, scenario: str, point: str) -> None:
    crash_and_resume(tmp_path, scenario, point)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["during:create_dataset:2", "after:create_dataset:3",
                                   "during:replace_setup:1"])  # fmt: skip
def test_kills_against_serve_with_upstream_quirks(tmp_path: Path, point: str) -> None:
    """The client dies while the server goes on (a request in flight completes)."""
    from tests.manifests import remote_manifest

    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        manifest = remote_manifest(tmp_path, base, "dev-admin")
        env = {SECRET_ENV: SECRET}
        crash(manifest, env, point)
        assert cli_run("apply", str(manifest), "--yes", env=env)[0] == 0
        code, output = cli_run("plan", str(manifest), "--detailed-exitcode", env=env)
        assert code == 0, output
    with sqlite3.connect(tmp_path / "serve.db") as connection:
        rows = connection.execute(
            "SELECT category_id, indicator_id, srid, trid, dt FROM metadata"
        ).fetchall()
    assert len(rows) == len(set(rows)) == 3  # the manifest's three datasets, once each


def test_a_plan_saved_over_a_journal_left_behind_still_applies(tmp_path: Path) -> None:
    """Folding the journal changes the record's serial, not what it says: the reviewed
    plan is not stale for that."""
    manifest, env = prepared(tmp_path, "fresh")
    crash(manifest, env, "after:create_dataset:20")
    saved = tmp_path / "plan.json"
    code, output = cli_run("plan", str(manifest), "--out", str(saved), env=env)
    assert code == 0, output
    code, output = cli_run("apply", str(saved), "-q", env=env)
    assert code == 0, output
    assert_exactly_desired(manifest, env, tmp_path / "example.db")


def test_ctrl_c_lets_writes_in_flight_finish_and_the_next_run_completes(tmp_path: Path) -> None:
    """SIGINT mid-apply: the writes in flight finish, the rest is skipped, the record
    says so (history: interrupted), the exit is 130; the next apply does the rest."""
    import signal
    import time

    from tests.manifests import remote_manifest

    with serving(tmp_path / "serve.db", "--latency", "--request-cost", "0.25") as base:
        manifest = remote_manifest(tmp_path, base, "dev-admin")
        env = {**os.environ, SECRET_ENV: SECRET}
        process = subprocess.Popen(
            [sys.executable, "-m", "loader", "apply", str(manifest), "--yes", "-q", "-j", "1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        state = manifest.parent / "manifest.remote.state.json.journal"
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:  # the apply has begun
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 130, out + err
        assert "Apply interrupted: " in out and "skipped: " in out and "interrupted" in out
        record = json.loads((manifest.parent / "manifest.remote.state.json").read_text())
        assert record["history"][-1]["outcome"] == "interrupted"
        assert not state.exists()  # folded into the record
        code, output = cli_run("apply", str(manifest), "--yes", "-q", env={SECRET_ENV: SECRET})
        assert code == 0 and output.startswith("Apply complete: "), output
        code, output = cli_run("plan", str(manifest), "--detailed-exitcode",
                               env={SECRET_ENV: SECRET})  # fmt: skip
        assert code == 0, output


@pytest.mark.slow
def test_a_backend_that_stops_answering_stops_the_apply_soon(tmp_path: Path) -> None:
    """The network goes away mid-apply: after a few changes without any answer, no new
    one is started and the summary says why; with the network back, the next apply
    finishes the job."""
    from loader import applying
    from tests.manifests import example_manifest
    from tests.proxying import proxy as loopback_proxy

    with serving(tmp_path / "serve.db", "--latency", "--request-cost", "0.05") as base:
        with loopback_proxy(base) as network:
            proxy = network.url
            manifest = example_manifest(tmp_path, proxy)

            def cut(outcome: object) -> None:
                if len(network.seen) > 30:  # well into the datasets
                    network.close()

            applied = applying.apply(manifest, environ={SECRET_ENV: SECRET}, progress=cut)
        counts = applied.result.counts()
        assert not applied.result.ok and counts["failed"] <= 2 * 4  # a few per worker
        assert any("stopped answering" in o.message for o in applied.result.outcomes)
        assert sum(counts.values()) == 96
        for path in (tmp_path / "example.served.state.json", manifest):
            path.write_text(path.read_text().replace(proxy, base))
        again = applying.apply(manifest, environ={SECRET_ENV: SECRET})
        assert again.result.ok and again.plan.has_changes
