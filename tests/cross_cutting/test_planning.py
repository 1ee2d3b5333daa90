"""plan, show, apply, status and import through the CLI, on the embedded local backend:
the example manifest end to end, one changed value, removed files and rules, saved plans
and their refusals, the JSON schema, Markdown limits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from loader.planfile import plan_data
from loader.render import render_markdown
from loader.validation import schema_text
from tests.helpers import cli_run as run
from tests.helpers import edit_column, write_manifest
from tests.manifests import copy_example, env_for

PLAN_SCHEMA = json.loads(schema_text("plan.schema.json"))


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def plan_json(manifest: Path, *extra: str) -> dict[str, object]:
    code, output = run("plan", str(manifest), "--format", "json", *extra, env=env_for(manifest))
    assert code in (0, 2), output
    data: dict[str, object] = json.loads(output)
    jsonschema.validate(data, PLAN_SCHEMA)
    return data


def test_the_example_against_an_empty_backend_is_all_creates(example: Path) -> None:
    data = plan_json(example)
    summary = data["summary"]
    assert summary == {"create": 96, "update": 0, "delete": 0, "replace": 0, "destructive": 0}
    changes = data["changes"]
    assert isinstance(changes, list)
    assert {c["action"] for c in changes} == {"create"}
    assert changes[0]["subject"] == "setup"
    assert sum(c["subject"] == "dataset" for c in changes) == 46
    assert data["roles"] == ["admin", "updater", "reader"]
    assert data["refreshed"] is True
    assert not (example.parent / "example.db").exists()  # planning created nothing
    assert run("status", str(example), env=env_for(example))[0] == 0
    assert not (example.parent / "example.db").exists()


def test_apply_then_plan_shows_nothing_and_the_exit_codes_say_so(example: Path) -> None:
    env = env_for(example)
    code, output = run("plan", str(example), "--detailed-exitcode", env=env)
    assert code == 2 and "Plan: 96 to create, 0 to update, 0 to delete" in output
    code, output = run("apply", str(example), "--yes", env=env)
    assert code == 0, output
    assert output.endswith("Apply complete: 96 done, 0 failed, 0 skipped\n")
    code, output = run("plan", str(example), "--detailed-exitcode", env=env)
    assert code == 0, output
    assert "No changes: the target matches the manifest." in output
    assert "unchanged: 14 config entities, 46 datasets, 49 grants" in output
    code, output = run("apply", str(example), "--yes", env=env)
    assert (code, output) == (0, "No changes: the target matches the manifest.\n")


def test_one_changed_value_is_one_update_with_its_regrants(example: Path) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    csv = example.parent / "example" / "data" / "residents_district_monthly.csv"
    lines = csv.read_text().splitlines(keepends=True)
    header = lines[0].split(",")
    row = lines[1].split(",")
    column = header.index("residents")
    row[column] = str(int(float(row[column])) + 1)
    lines[1] = ",".join(row)
    csv.write_text("".join(lines))
    data = plan_json(example)
    changes = data["changes"]
    assert isinstance(changes, list)
    assert [(c["symbol"], c["subject"], c["reason"]) for c in changes] == [
        ("~", "dataset", "content changed"),
        ("+", "grant", "re-grant after update"),
        ("+", "grant", "re-grant after update"),
    ]
    assert changes[0]["dataset"]["indicator_id"] == "residents.residents"
    before, after = changes[0]["before"]["stats"], changes[0]["dataset"]["stats"]
    assert before["count"] == after["count"]
    assert int(after["sum"]) == int(before["sum"]) + 1
    assert {c["scope"] for c in changes[1:]} <= {"read:free_data", "read:premium_data"}
    code, output = run("apply", str(example), "--yes", env=env)
    assert code == 0 and f"Apply complete: {len(changes)} done" in output
    assert run("plan", str(example), "--detailed-exitcode", env=env)[0] == 0


def test_a_removed_file_needs_allow_destroy(example: Path) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    text = example.read_text()
    start = text.index("  - file: example/data/movements_district_daily.csv")
    end = text.index("access:")
    example.write_text(text[:start] + text[end:])
    code, output = run("plan", str(example), env=env)
    assert (
        "  -   datasets of movements.travellers srid=2 (District) "
        "trid=4 (Day): 2021-03-01..2021-03-14, 14 "
        "datasets: removed from the manifest [destructive]\n" in output
    )
    code, output = run("apply", str(example), "--yes", env=env)
    assert code == 1
    assert "Plan: 0 to create, 0 to update, 28 to delete (28 destructive)" in output  # shown
    assert output.splitlines()[-1].startswith("error: the plan destroys 28 thing(s) (- dataset ")
    assert output.splitlines()[-1].endswith("apply again with --allow-destroy to proceed")
    code, output = run("apply", str(example), "--yes", "--allow-destroy", "--max-destroy", "10",
                       env=env)  # fmt: skip
    assert code == 1 and "more than --max-destroy 10" in output
    code, output = run("apply", str(example), "--yes", "--allow-destroy", env=env)
    assert code == 0 and "Apply complete: 28 done" in output
    assert run("plan", str(example), "--detailed-exitcode", env=env)[0] == 0


def test_a_narrowed_access_rule_revokes_grants(example: Path) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    example.write_text(example.read_text().replace("duration: 3", "duration: 1"))
    data = plan_json(example)
    assert [(c["symbol"], c["subject"], c["scope"], c["key"]["dt"]) for c in data["changes"]] == [
        ("-", "grant", "read:free_data", "2021-02-01 00:00:00"),
        ("-", "grant", "read:free_data", "2021-03-01 00:00:00"),
    ]
    assert run("apply", str(example), "--yes", "--allow-destroy", env=env)[0] == 0
    assert run("plan", str(example), "--detailed-exitcode", env=env)[0] == 0
    # The revokes reached the server: a free-data reader now sees January alone.
    from loader.backends.local import LocalBackend
    from loader.backends.store import Principal
    from loader.model import QueryRange

    reader = LocalBackend(example.parent / "example.db").as_principal(
        Principal(frozenset({"read:free_data"}), frozenset({"read:free_data"}))
    )
    query = QueryRange("residents", "residents.residents", 2, 2, "2021-01", 6)
    assert len(reader.visible_mdids(query)) == 1


def test_a_changed_label_is_one_entity_update(example: Path) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    config = example.parent / "example" / "config.json"
    body = json.loads(config.read_text())
    body["indicators"][0]["label"] = "Something else"
    config.write_text(json.dumps(body))
    data = plan_json(example)
    assert [(c["symbol"], c["subject"], c["reason"]) for c in data["changes"]] == [
        ("~", "entity", "content changed")
    ]
    assert data["changes"][0]["detail"].endswith("-> 'Something else'")
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    assert run("plan", str(example), "--detailed-exitcode", env=env)[0] == 0


def test_a_saved_plan_applies_exactly_or_is_refused_when_stale(
    example: Path, tmp_path: Path
) -> None:
    env = env_for(example)
    saved = tmp_path / "plan.json"
    code, output = run("plan", str(example), "--out", str(saved), env=env)
    assert code == 0 and f"Saved to {saved}" in output
    jsonschema.validate(json.loads(saved.read_text()), PLAN_SCHEMA)
    code, shown = run("show", str(saved), env=env)
    assert code == 0 and shown == output.rsplit("Saved to", 1)[0]
    # Anything it was based on changes: refused.
    csv = example.parent / "example" / "data" / "residents_district_monthly.csv"
    original = csv.read_text()
    csv.write_text(original.replace(",1", ",2", 1))
    code, output = run("apply", str(saved), env=env)
    assert code == 1 and "the saved plan is stale" in output
    csv.write_text(original)
    code, output = run("apply", str(saved), "-q", env=env)
    assert code == 0 and output == "Apply complete: 96 done, 0 failed, 0 skipped\n"
    # Applied: the record moved on, so the same plan is now stale.
    code, output = run("apply", str(saved), env=env)
    assert code == 1 and "stale" in output


def test_an_offline_plan_is_for_review_not_for_apply(example: Path, tmp_path: Path) -> None:
    """(What --reviewed then does with it: tests/test_planfile.py.)"""
    env = env_for(example)
    saved = tmp_path / "offline.json"
    code, output = run("plan", str(example), "--offline", "--out", str(saved), env=env)
    assert code == 0 and "NOT refreshed (offline)" in output
    assert "note: not refreshed: planned against the state record alone" in output
    code, output = run("apply", str(saved), env=env)
    assert (code, output.strip()) == (
        1,
        f"error: {saved}: an offline plan is for review: apply it with "
        f"`flowkit-loader apply {example} --reviewed {saved}`",
    )


def test_a_plan_made_for_another_target_is_refused(example: Path, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    assert run("plan", str(example), "--out", str(saved), env=env_for(example))[0] == 0
    other = env_for(example) | {"FLOWKIT_EXAMPLE_DB": str(tmp_path / "elsewhere.db")}
    code, output = run("apply", str(saved), env=other)
    assert code == 1 and "the saved plan was made for local:" in output


def test_a_broken_plan_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text('{"format_version": 2, "changes": 3}')
    code, output = run("show", str(bad))
    assert code == 1 and output.count("\n") == 1
    assert output.startswith(f"error: {bad}: not a valid plan (")
    bad.write_text("{")
    assert run("show", str(bad))[1].startswith(f"error: {bad}: not a plan file:")


def test_only_narrows_the_plan_and_the_apply(example: Path) -> None:
    env = env_for(example)
    data = plan_json(example, "--only", "indicator=residents.residents", "--only",
                     "dates=2021-02..2021-03")  # fmt: skip
    datasets = [c["key"]["dt"] for c in data["changes"] if c["subject"] == "dataset"]
    assert datasets == ["2021-02-01 00:00:00", "2021-03-01 00:00:00"]
    assert data["only"] == ["indicator=residents.residents", "dates=2021-02..2021-03"]
    code, output = run("apply", str(example), "--yes", "--only", "category=movements", env=env)
    assert code == 0, output
    data = plan_json(example)
    assert not any(c["key"]["category_id"] == "movements" for c in data["changes"] if "key" in c)
    # ... and only those: the residents are still all to create.
    residents = [c for c in data["changes"] if c["subject"] == "dataset"]
    assert len(residents) == 18 and all(c["action"] == "create" for c in residents)


def test_status_shows_ranges_gaps_grants_and_the_last_apply(example: Path) -> None:
    env = env_for(example)
    code, output = run("status", str(example), "--offline", env=env)
    assert code == 0 and "nothing loaded by flowkit-loader yet" in output
    assert run("apply", str(example), "--yes", "--only", "dates=2021-01..2021-02", "--only",
               "category=residents", env=env)[0] == 0  # fmt: skip
    assert run("apply", str(example), "--yes", "--only", "dates=2021-04", "--only",
               "category=residents", env=env)[0] == 0  # fmt: skip
    code, output = run("status", str(example), env=env)
    assert code == 0, output
    assert (
        "  residents.residents srid=2 (District) trid=2 (Month): 2021-01..2021-04, 3 datasets, "
        in output
    )
    assert "      gaps: 2021-03\n" in output
    assert "      grants: read:free_data 2, read:premium_data 3\n" in output
    assert "(complete, " in output and "last apply: 20" in output


def test_markdown_stays_under_githubs_limit_with_a_truncation_note(example: Path) -> None:
    code, output = run("plan", str(example), "--format", "markdown", env=env_for(example))
    assert code == 0 and "<details><summary>" in output and "Truncated" not in output
    data = plan_json(example)
    big = dict(data)
    many = []
    for i in range(3000):  # one line each: different reasons never fold together
        change = dict(data["changes"][1])
        change["reason"] = ["new", "drifted"][i % 2]
        change["key"] = {**change["key"], "dt": f"{2000 + i // 365}-01-01 00:00:00",
                         "indicator_id": f"x{i}"}  # fmt: skip
        many.append(change)
    big["changes"] = many
    text = render_markdown(big)
    assert len(text) <= 65_536
    assert "**Truncated:**" in text and "`flowkit-loader show plan.json` prints them all" in text
    assert text.count("```") == 4  # the chart's block and the changes', each closed


def test_plan_data_of_the_python_api_matches_the_cli(example: Path) -> None:
    import loader

    made = loader.plan(example, environ=env_for(example))
    assert plan_data(made)["summary"] == plan_json(example)["summary"]
    saved = example.parent / "api-plan.json"
    loader.save_plan(made, saved)
    applied = loader.apply(saved, environ=env_for(example))
    assert applied.result.ok and applied.plan.fingerprint == made.fingerprint


def test_apply_without_yes_off_a_terminal_refuses(example: Path) -> None:
    code, output = run("apply", str(example), env=env_for(example))
    assert code == 1
    assert output.splitlines()[-1] == (
        "error: not on a terminal: apply needs --yes (or a saved plan)"
    )


def test_import_takes_over_a_deployment_and_then_plans_nothing(
    example: Path, tmp_path: Path
) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    state = example.parent / ".flowkit" / "example.local.state.json"
    state.unlink()  # as if another tool had filled the database
    code, output = run("plan", str(example), env=env)
    assert "46 datasets" not in output and "on the server are not in the state record" in output
    code, output = run("import", str(example), env=env)
    assert code == 0, output
    assert output.splitlines()[0] == (
        "datasets: 46 match and are recorded, 0 differ (recorded; the next apply updates "
        "them), 0 absent, 0 ambiguous; 0 were recorded already"
    )
    assert "\ngrants read:free_data: 3 verified\n" in output
    assert run("plan", str(example), "--detailed-exitcode", env=env)[0] == 0
    code, output = run("import", str(example), env=env)  # again: nothing new
    assert output.splitlines()[0].endswith("0 ambiguous; 46 were recorded already")


def test_write_manifest_helper_plans(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path, {"residents.csv": "month,pcod,residents\n2021-01-01,EX01-01,5\n"}
    )
    code, output = run("plan", str(manifest), "--detailed-exitcode")
    assert code == 2 and "+   setup" in output


def tamper(example: Path, indicator: str) -> dict[str, object]:
    """Add 1 to a stored value of the indicator's first recorded dataset, under the
    same mdid (only a direct database edit can do that); that dataset's record."""
    import sqlite3
    from array import array

    state = json.loads((example.parent / ".flowkit" / "example.local.state.json").read_text())
    target: dict[str, object] = next(d for d in state["datasets"] if d["indicator_id"] == indicator)
    with sqlite3.connect(example.parent / "example.db") as db:
        row_id, blob = db.execute(
            "SELECT data.row_id, data.nanos FROM data JOIN metadata ON metadata.id = "
            "data.row_id WHERE metadata.mdid = ?", (target["mdid"],)
        ).fetchone()  # fmt: skip
        values = array("q")
        values.frombytes(blob)
        values[0] += 10**9
        db.execute("UPDATE data SET nanos = ? WHERE row_id = ?", (values.tobytes(), row_id))
    return target


def test_verify_reads_content_back_and_finds_what_digests_cannot(example: Path) -> None:
    """The record trusts digests; a value changed in the server's database under the same
    mdid shows only when the content is read back."""
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    verified = example.parent / "verified.json"
    assert run("plan", str(example), "--verify", "--out", str(verified), env=env)[0] == 0
    target = tamper(example, "residents.arrived")
    assert run("plan", str(example), "--detailed-exitcode", env=env)[0] == 0
    data = plan_json(example, "--verify")
    assert [(c["subject"], c["reason"], c["detail"], c["key"]["dt"]) for c in data["changes"]
            if c["subject"] == "dataset"] == [
        ("dataset", "drifted", "content on the server differs from the manifest's", target["dt"])
    ]  # fmt: skip
    assert data["verify"] is True
    # A --verify plan saved before the change no longer describes the server.
    code, output = run("apply", str(verified), env=env)
    assert code == 1 and "the saved plan is stale" in output
    assert run("apply", str(example), "--yes", env=env)[0] == 0  # a plain apply trusts digests
    assert len(plan_json(example, "--verify")["changes"]) > 0
    code, output = run("apply", str(example), "--yes", "--verify", env=env)
    assert code == 0 and "Apply complete: 2 done" in output  # the rewrite and its grant
    assert plan_json(example, "--verify")["changes"] == []
    code, output = run("plan", str(example), "--verify", "--offline", env=env)
    assert (code, output.strip()) == (1, "error: --verify reads the server: it cannot be --offline")


def test_a_state_record_in_a_remote_store(example: Path) -> None:
    """State kept where throwaway CI runners share it: here fsspec's in-memory store."""
    import uuid

    import fsspec

    env = env_for(example)
    location = f"memory://flowkit-tests/{uuid.uuid4().hex}/example.state.json"
    code, output = run("apply", str(example), "--yes", "--state", location, env=env)
    assert code == 0, output
    fs = fsspec.filesystem("memory")
    stored = json.loads(fs.cat_file(location.removeprefix("memory://")))
    assert stored["serial"] == 1 and len(stored["datasets"]) == 46
    assert not fs.exists(location.removeprefix("memory://") + ".lock")
    assert not fs.exists(location.removeprefix("memory://") + ".journal")
    code, output = run("plan", str(example), "--state", location, "--detailed-exitcode", env=env)
    assert code == 0, output


def test_a_held_lock_stops_apply_and_unlock_breaks_it(example: Path) -> None:
    from loader.state import StateStore

    env = env_for(example)
    location = str(example.parent / ".flowkit" / "example.local.state.json")
    StateStore(location, clock=lambda: 0.0).acquire("alice@ci-runner:42", ttl=60)
    code, output = run("apply", str(example), "--yes", env=env)
    assert code == 1
    assert output.strip() == (
        f"error: {location}: state is locked, held by alice@ci-runner:42 (expired "
        + output.split("(expired ")[1].split(")")[0]
        + "); `flowkit-loader unlock` breaks it if that run is gone"
    )
    code, output = run("unlock", str(example), env=env)
    assert (code, output) == (0, f"{location}: lock of alice@ci-runner:42 broken\n")
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    assert run("unlock", str(example), env=env)[1] == f"{location}: no lock\n"
    StateStore(location).acquire("bob@ci-runner:7", ttl=600)  # not expired: maybe running
    code, output = run("unlock", str(example), env=env)
    assert code == 1 and "break it only if that run is gone (--force)" in output
    assert run("unlock", str(example), "--force", env=env)[0] == 0


def test_progress_is_a_bar_on_a_terminal_and_log_lines_off_it(example: Path) -> None:
    import os
    import subprocess
    import sys
    import threading

    env = {**os.environ, **env_for(example)}
    command = [sys.executable, "-m", "loader", "apply", str(example), "--yes"]
    leader, follower = os.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=follower,
                          timeout=120, check=False)  # fmt: skip
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    assert done.returncode == 0
    bar = b"".join(chunks).decode()
    assert "\r[" in bar and "] 96/96 100% " in bar and "/s ETA 0:00" in bar
    # Off a terminal: log lines (the last at the end), and -q says only the summary.
    (example.parent / "example.db").unlink()
    shutil.rmtree(example.parent / ".flowkit")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.stderr.splitlines()[-1].startswith("apply: 96/96 100% ")
    assert "\r" not in done.stderr
    (example.parent / "example.db").unlink()
    shutil.rmtree(example.parent / ".flowkit")
    done = subprocess.run([*command, "-q"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert (done.stdout, done.stderr) == ("Apply complete: 96 done, 0 failed, 0 skipped\n", "")


def test_a_partial_failure_goes_on_skips_dependants_and_reports(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One dataset the server refuses: its grants are skipped, everything else is done,
    the summary says so, the exit is 1, and the next apply finishes the job."""
    from loader import applying
    from loader.model import BackendError

    connect = applying.connect
    refused = "2021-02-01 00:00:00"

    class Refusing:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def create_dataset(self, dataset: object) -> object:
            key = dataset.key  # type: ignore[attr-defined]
            if key.indicator_id == "residents.residents" and key.dt == refused:
                raise BackendError("POST /data", 500, "Internal Server Error")
            return self.inner.create_dataset(dataset)  # type: ignore[attr-defined]

    def refusing_connect(*args: object, **kwargs: object) -> object:
        connection = connect(*args, **kwargs)  # type: ignore[arg-type]
        connection.backend = Refusing(connection.backend)  # type: ignore[assignment]
        return connection

    monkeypatch.setattr(applying, "connect", refusing_connect)
    env = env_for(example)
    code, output = run("apply", str(example), "--yes", "-q", env=env)
    assert code == 1
    lines = output.splitlines()
    assert lines[0] == (
        f"  failed: dataset residents.residents srid=2 (District) "
        f"trid=2 (Month) {refused}: POST /data: 500 "
        "Internal Server Error"
    )
    assert lines[1:3] == [
        f"  skipped: grant read:free_data -> residents.residents srid=2 (District) "
        f"trid=2 (Month) {refused}: "
        "its dataset write failed",
        f"  skipped: grant read:premium_data -> residents.residents srid=2 (District) "
        f"trid=2 (Month) {refused}: "
        "its dataset write failed",
    ]
    assert lines[-1] == "Apply incomplete: 93 done, 1 failed, 2 skipped"
    monkeypatch.setattr(applying, "connect", connect)
    data = plan_json(example)
    assert data["summary"]["create"] == 3  # what did not happen, and nothing else
    code, output = run("apply", str(example), "--yes", "-q", env=env)
    assert (code, output) == (0, "Apply complete: 3 done, 0 failed, 0 skipped\n")


def test_the_python_api_works_inside_a_running_event_loop(example: Path) -> None:
    """As in a Jupyter cell: the loop is running while the API is called."""
    import asyncio

    import loader

    async def cell() -> tuple[int, bool, int]:
        made = loader.plan(example, environ=env_for(example))
        applied = loader.apply(example, environ=env_for(example))
        again = loader.plan(example, environ=env_for(example))
        return len(made.changes), applied.result.ok, len(again.changes)

    assert asyncio.run(cell()) == (96, True, 0)


def test_a_saved_plan_applies_from_another_directory(example: Path, tmp_path: Path) -> None:
    """CI may plan in the repository's root and apply elsewhere: the plan finds its
    manifest beside itself, and what it was made from does not depend on the directory."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **env_for(example)}
    saved = tmp_path / "plans" / "plan.json"
    saved.parent.mkdir()
    made = subprocess.run([sys.executable, "-m", "loader", "plan", "manifests/example.yaml",
                           "--out", str(saved)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert json.loads(saved.read_text())["manifest_from_plan"] == "../manifests/example.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "loader", "apply", str(saved), "-q"]
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Apply complete: 96 done, 0 failed, 0 skipped\n"


def test_many_updates_fold_with_their_pooled_statistics_and_notes_fit_the_comment(
    example: Path,
) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    csv = example.parent / "example" / "data" / "movements_district_daily.csv"
    edit_column(csv, "travellers", lambda value: value * 2)
    code, output = run("plan", str(example), env=env)
    assert (
        code == 0
        and (
            "  ~   datasets of movements.travellers srid=2 (District) "
            "trid=4 (Day): 2021-03-01..2021-03-14, "
            "14 datasets: content changed\n        count 280, sum "
        )
        in output
    )
    pooled = output.split("14 datasets: content changed\n        ")[1].splitlines()[0]
    before, after = (int(part.split()[-1]) for part in pooled.split(", ")[1].split(" -> "))
    assert after == 2 * before  # every value doubled
    data = plan_json(example)
    data["notes"] = [f"note {i}: " + "x" * 200 for i in range(1000)]
    text = render_markdown(data)
    assert len(text) <= 65_536 and "more notes (`flowkit-loader show plan.json`" in text


def test_a_saved_plan_is_known_by_its_content_whatever_its_name(example: Path) -> None:
    env = env_for(example)
    saved = example.parent / "reviewed.plan"
    assert run("plan", str(example), "--out", str(saved), env=env)[0] == 0
    code, output = run("apply", str(saved), "-q", env=env)
    assert (code, output) == (0, "Apply complete: 96 done, 0 failed, 0 skipped\n")


def test_import_records_a_dataset_that_differs_so_that_the_next_apply_rewrites_it(
    example: Path,
) -> None:
    env = env_for(example)
    assert run("apply", str(example), "--yes", env=env)[0] == 0
    target = tamper(example, "residents.arrived")
    (example.parent / ".flowkit" / "example.local.state.json").unlink()
    code, output = run("import", str(example), env=env)
    assert code == 0, output
    assert output.splitlines()[:2] == [
        "datasets: 45 match and are recorded, 1 differ (recorded; the next apply updates "
        "them), 0 absent, 0 ambiguous; 0 were recorded already",
        f"  differs: residents.arrived srid=2 trid=2 {target['dt']}",
    ]
    data = plan_json(example)
    assert [(c["subject"], c["reason"]) for c in data["changes"]] == [
        ("dataset", "content changed"), ("grant", "re-grant after update"),
    ]  # fmt: skip
    before, after = data["changes"][0]["before"]["stats"], data["changes"][0]["dataset"]["stats"]
    assert int(before["sum"]) == int(after["sum"]) + 1  # the server's extra 1
    assert run("apply", str(example), "--yes", "-q", env=env)[0] == 0
    assert plan_json(example, "--verify")["changes"] == []


def test_the_history_names_the_commit_and_the_plan(example: Path, tmp_path: Path) -> None:
    import subprocess

    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path)}  # fmt: skip

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True, env=identity)  # fmt: skip
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "deployment")
    saved = tmp_path / "plan.json"
    env = env_for(example)
    assert run("plan", str(example), "--out", str(saved), env=env)[0] == 0
    assert run("apply", str(saved), "-q", env=env)[0] == 0
    record = json.loads((example.parent / ".flowkit" / "example.local.state.json").read_text())
    entry = record["history"][-1]
    assert entry["commit"] == git("rev-parse", "HEAD")
    assert entry["plan_fingerprint"] == json.loads(saved.read_text())["fingerprint"]
    assert entry["outcome"] == "complete" and entry["who"] == "local-admin"
    assert entry["counts"] == {"done": 96, "failed": 0, "skipped": 0}
    # A tracked file changed since the commit: the history says so.
    config = example.parent / "example" / "config.json"
    config.write_text(config.read_text().replace('"Residents"', '"Residents (count)"', 1))
    assert run("apply", str(example), "--yes", "-q", env=env)[0] == 0
    record = json.loads((example.parent / ".flowkit" / "example.local.state.json").read_text())
    assert record["history"][-1]["commit"] == git("rev-parse", "HEAD") + "-dirty"


def test_a_failed_category_skips_its_indicators_and_their_datasets(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loader import applying
    from loader.model import BackendError, EntityKind

    connect = applying.connect

    class Refusing:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def create_entity(self, kind: EntityKind, body: dict[str, object]) -> object:
            if kind is EntityKind.CATEGORY and body["category_id"] == "movements":
                raise BackendError("POST /categories", 500, "Internal Server Error")
            return self.inner.create_entity(kind, body)  # type: ignore[attr-defined]

    def refusing_connect(*args: object, **kwargs: object) -> object:
        connection = connect(*args, **kwargs)  # type: ignore[arg-type]
        connection.backend = Refusing(connection.backend)  # type: ignore[assignment]
        return connection

    env = env_for(example)
    # The setup first, by hand, without the movements category: then plain creates.
    config = example.parent / "example" / "config.json"
    full = config.read_text()
    body = json.loads(full)
    body["categories"] = [c for c in body["categories"] if c["category_id"] != "movements"]
    body["indicators"] = [i for i in body["indicators"] if i["category_id"] != "movements"]
    config.write_text(json.dumps(body))
    text = example.read_text()
    start = text.index("  - file: example/data/movements_district_daily.csv")
    example.write_text(text[:start] + text[text.index("access:") :].split("  read:premium")[0])
    assert run("apply", str(example), "--yes", "-q", env=env)[0] == 0
    config.write_text(full)
    example.write_text(text)
    monkeypatch.setattr(applying, "connect", refusing_connect)
    code, output = run("apply", str(example), "--yes", "-q", env=env)
    assert code == 1
    assert "  failed: category movements: POST /categories: 500 Internal Server Error" in output
    # Its two indicators, their 28 datasets and those datasets' 28 grants; the residents'
    # premium grants (new in the manifest) are done.
    assert "  skipped: 58 changes: its category movements failed\n" in output
    assert output.endswith("Apply incomplete: 18 done, 1 failed, 58 skipped\n")
