"""Compatibility: files on disk written by the loader of commit eae3af7 are still read.
tests/data/compat/ (see its README) holds what that code left: a state record and its
embedded database after a complete apply, the journal of an apply killed mid-way, a
state lock whose holder is gone, and saved plans, unsigned and signed. Each folder is
copied into a temporary directory and used there through the CLI (and the public API);
every expected value below is what eae3af7's code printed for these very files."""

from __future__ import annotations

import fcntl
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import loader
from loader.cli import cli
from tests.conftest import DATA

COMPAT = DATA / "compat"
KEY = "compat-fixture-key"  # FLOWKIT_PLAN_KEY of plans/plan-signed.json
HOLDER = "ci@gone-runner:4242#c0ffee42"  # locked/'s lock
# Where plans/ was made: a `local:` target's url is resolved to an absolute path, and the
# saved plan keeps it (its target_url and its fingerprint).
MADE_FOR = "local:/tmp/flowkit-compat/plans/compat.db"

RESIDENTS = """\
  residents.arrived srid=2 (District) trid=2 (Month): 2021-01..2021-02, 2 datasets, 4 values
      coverage: ██
      grants: admin only
  residents.residents srid=2 (District) trid=2 (Month): 2021-01..2021-02, 2 datasets, 4 values
      coverage: ██
      grants: read:free_data 2
"""
# The fixtures' one complete apply (its time is the record's, not this run's).
LAST_APPLY = "  last apply: 2026-12-03T10:13:18+00:00 by local-admin (complete, loader 0.1.0)\n"
# Saved before plans carried their resolutions' labels: shown without them.
FIRST_PLAN = """\
Plan for compat.yaml on target local (refreshed against the server)
  +   setup (the whole config, languages included): new (fresh deployment: 1 language, \
1 data provider, 2 categories, 3 indicators, 1 spatial resolution, 3 temporal resolutions)
  +   dataset movements.travellers srid=2 trid=4 2021-03-01 00:00:00: new
  +   dataset movements.travellers srid=2 trid=4 2021-03-02 00:00:00: new
  +   dataset residents.arrived srid=2 trid=2 2021-01-01 00:00:00: new
  +   dataset residents.arrived srid=2 trid=2 2021-02-01 00:00:00: new
  +   dataset residents.residents srid=2 trid=2 2021-01-01 00:00:00: new
        + grant read:free_data (new)
  +   dataset residents.residents srid=2 trid=2 2021-02-01 00:00:00: new
        + grant read:free_data (new)
Plan: 9 to create, 0 to update, 0 to delete; unchanged: 0 config entities, 0 datasets, 0 grants
Roles needed: admin, updater, reader
"""
NO_CHANGES = """\
Plan for compat.yaml on target local (refreshed against the server)
No changes: the target matches the manifest.
Plan: 0 to create, 0 to update, 0 to delete; unchanged: 11 config entities, 6 datasets, 2 grants
"""


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """A private copy of one fixture folder, made the working directory (the paths in
    the manifest and the record are relative); its absolute path returned."""

    def copy(name: str) -> Path:
        directory = tmp_path / name
        shutil.copytree(COMPAT / name, directory)
        monkeypatch.chdir(directory)
        return directory.resolve()

    return copy


def header(here: Path, refreshed: bool) -> str:
    how = "checked against the server" if refreshed else "from the state record only"
    return f"Target local (local:{here}/compat.db), state {here}/state/record.json, {how}\n"


def database_datasets(path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT mdid, indicator_id, dt FROM metadata").fetchall()
    return sorted(rows)


# ---------------------------------------------------------------------------------------
# (a) a complete apply


def test_an_applied_record_is_read_and_its_database_needs_no_change(
    fixture: Callable[[str], Path],
) -> None:
    here = fixture("applied")
    record = here / "state" / "record.json"
    stored = record.read_bytes()
    movements = (
        "  movements.travellers srid=2 (District) trid=4 (Day): 2021-03-01..2021-03-02, "
        "2 datasets, 3 values\n"
        "      coverage: ██\n"
        "      grants: admin only\n"
    )
    rest = movements + RESIDENTS + "  config: 11 entities recorded\n" + LAST_APPLY
    assert run("status", "compat.yaml") == (0, header(here, True) + rest)
    assert run("status", "compat.yaml", "--offline") == (0, header(here, False) + rest)
    assert run("plan", "compat.yaml", "--detailed-exitcode") == (0, NO_CHANGES)
    assert loader.plan("compat.yaml").has_changes is False
    found = loader.status("compat.yaml")
    assert (found.pending, found.entities, found.refreshed) == (0, 11, True)
    assert found.last_apply is not None and found.last_apply.counts["done"] == 9
    code, output = run("apply", "compat.yaml", "--yes")
    assert (code, output.splitlines()[-1]) == (0, "No changes: the target matches the manifest.")
    assert record.read_bytes() == stored  # nothing to do: the record is not rewritten
    assert [row[0] for row in database_datasets(here / "compat.db")] == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------------------------------
# (b) an interrupted apply: the residents applied, then the whole manifest applied and
# killed right after its second dataset create (the first journaled, the second not)


def test_an_interrupted_apply_is_replayed_by_status_and_folded_in_by_the_next_apply(
    fixture: Callable[[str], Path],
) -> None:
    here = fixture("interrupted")
    record, journal = here / "state" / "record.json", here / "state" / "record.json.journal"
    stored, journaled = record.read_bytes(), journal.read_bytes()
    pending = (
        "  an interrupted apply left 2 changes in the journal: the next apply folds them in\n"
        "  movements.travellers srid=2 (District) trid=4 (Day): 2021-03-01..2021-03-01, "
        "1 dataset, 2 values\n"
        "      coverage: █\n"
        "      grants: admin only\n"
    )
    rest = pending + RESIDENTS + "  config: 11 entities recorded\n" + LAST_APPLY
    assert run("status", "compat.yaml") == (0, header(here, True) + rest)
    # The movements dataset is in the journal alone: replayed, not read from the server.
    assert run("status", "compat.yaml", "--offline") == (0, header(here, False) + rest)
    assert loader.status("compat.yaml", offline=True).pending == 2
    code, output = run("plan", "compat.yaml")
    assert code == 0, output
    lines = output.splitlines()
    assert (
        lines[1] == "  +   dataset movements.travellers srid=2 (District) "
        "trid=4 (Day) 2021-03-02 00:00:00: new"
    )
    assert lines[-2:] == [
        "Plan: 1 to create, 0 to update, 0 to delete; "
        "unchanged: 11 config entities, 5 datasets, 2 grants",
        "Roles needed: updater, reader",
    ]
    assert (record.read_bytes(), journal.read_bytes()) == (stored, journaled)  # only read

    assert run("apply", "compat.yaml", "--yes", "-q") == (
        0,
        "Apply complete: 1 done, 0 failed, 0 skipped\n",
    )
    assert not journal.exists()  # folded into the record
    after = json.loads(record.read_text())
    assert after["lineage"] == "b7c9ebe0-0467-4078-8ac6-fbf38c47c2c7"  # the same record
    assert after["serial"] == 3  # the journal folded in (2), then this apply (3)
    assert after["in_doubt"] == []
    assert [(h["outcome"], h["counts"]) for h in after["history"]] == [
        ("complete", {"done": 7, "failed": 0, "skipped": 0}),
        ("complete", {"done": 1, "failed": 0, "skipped": 0}),
    ]
    rows = database_datasets(here / "compat.db")
    identities = [(indicator, dt) for _, indicator, dt in rows]
    assert len(rows) == len(set(identities)) == 6  # each dataset once on the server
    assert sorted(d["mdid"] for d in after["datasets"]) == [row[0] for row in rows]
    code, output = run("status", "compat.yaml", "--offline")
    assert code == 0 and output.startswith(
        header(here, False)
        + "  movements.travellers srid=2 (District) trid=4 (Day): 2021-03-01..2021-03-02, "
        "2 datasets, 3 values\n"
    ), output
    assert run("plan", "compat.yaml", "--detailed-exitcode") == (0, NO_CHANGES)


# ---------------------------------------------------------------------------------------
# (c) a lock whose holder (another machine) is gone, long expired


def test_a_lock_of_a_gone_holder_stops_apply_until_unlock_breaks_it(
    fixture: Callable[[str], Path],
) -> None:
    here = fixture("locked")
    lock = here / "state" / "record.json.lock"
    held = lock.read_bytes()
    location = f"{here}/state/record.json"
    code, output = run("apply", "compat.yaml", "--yes")
    assert code == 1
    start = f"error: {location}: state is locked, held by {HOLDER} (expired "
    assert output.startswith(start), output
    assert output.endswith(" s ago); `flowkit-loader unlock` breaks it if that run is gone\n")
    assert output[len(start) :].split(" ", 1)[0].isdigit()  # how long ago: not asserted
    assert lock.read_bytes() == held
    assert not (here / "compat.db").exists() and not (here / "state" / "record.json").exists()
    code, output = run("status", "compat.yaml", "--offline")  # reading needs no lock
    assert (code, output.splitlines()[1:]) == (
        0,
        ["  nothing loaded by flowkit-loader yet", "  config: 0 entities recorded",
         "  last apply: never"],
    )  # fmt: skip
    assert run("unlock", "compat.yaml") == (0, f"{location}: lock of {HOLDER} broken\n")
    assert not lock.exists()
    assert run("unlock", "compat.yaml") == (0, f"{location}: no lock\n")
    assert run("apply", "compat.yaml", "--yes", "-q") == (
        0,
        "Apply complete: 9 done, 0 failed, 0 skipped\n",
    )
    assert not lock.exists()
    assert run("plan", "compat.yaml", "--detailed-exitcode") == (0, NO_CHANGES)


# ---------------------------------------------------------------------------------------
# (d) saved plans: made against an empty target, unsigned and signed with KEY


def test_saved_plans_are_shown_the_signed_one_with_its_key_only(
    fixture: Callable[[str], Path],
) -> None:
    fixture("plans")
    assert run("show", "plan.json") == (0, FIRST_PLAN)
    assert run("show", "plan-signed.json", env={"FLOWKIT_PLAN_KEY": KEY}) == (0, FIRST_PLAN)
    code, output = run("show", "plan.json", "--format", "json")
    shown = json.loads(output)
    assert (code, shown["fingerprint"], shown["summary"], shown["manifest"]) == (
        0,
        "87136cdf1525ce53a01467877c14b4b36a721bebc5900b696e8e5ed975480811",
        {"create": 9, "update": 0, "delete": 0, "replace": 0, "destructive": 0},
        "compat.yaml",
    )
    code, output = run("show", "plan.json", "--format", "markdown")
    assert code == 0 and "| `+` create | 9 |" in output.splitlines(), output
    signed = "error: plan-signed.json: the plan is signed: set FLOWKIT_PLAN_KEY to the key "
    assert run("show", "plan-signed.json") == (1, signed + "that signed it to read it\n")
    wrong = (
        "error: plan-signed.json: its signature is not FLOWKIT_PLAN_KEY's: it was signed with "
        "another key; plan again with this one\n"
    )
    assert run("show", "plan-signed.json", env={"FLOWKIT_PLAN_KEY": "wrong-key"}) == (1, wrong)
    unsigned = (
        "error: plan.json: the plan is not signed, and FLOWKIT_PLAN_KEY is set: only plans "
        "signed with that key are accepted; plan again with it\n"
    )
    assert run("show", "plan.json", env={"FLOWKIT_PLAN_KEY": KEY}) == (1, unsigned)


def test_applying_a_saved_plan_checks_its_signature_then_its_target(
    fixture: Callable[[str], Path],
) -> None:
    """apply PLAN reads and verifies the file (digest, schema, signature), finds its
    manifest beside it, and opens the run; eae3af7's code then refuses a copy of it made
    anywhere else than where it was planned: the plan names its `local:` database by
    absolute path (MADE_FOR). It carries the plan out there only (the next test)."""
    here = fixture("plans")
    elsewhere = f"{MADE_FOR}, not local:{here}/compat.db\n"
    assert run("apply", "plan.json") == (
        1,
        f"error: plan.json: the saved plan was made for {elsewhere}",
    )
    assert run("apply", "plan-signed.json", env={"FLOWKIT_PLAN_KEY": KEY}) == (
        1,
        f"error: plan-signed.json: the saved plan was made for {elsewhere}",
    )
    assert run("apply", "compat.yaml", "--reviewed", "plan.json") == (
        1,
        f"error: plan.json: the reviewed plan was made for {elsewhere}",
    )
    code, output = run("apply", "plan-signed.json")
    assert (code, output) == (
        1,
        "error: plan-signed.json: the plan is signed: set FLOWKIT_PLAN_KEY to the key that "
        "signed it to read it\n",
    )
    code, output = run("apply", "plan-signed.json", env={"FLOWKIT_PLAN_KEY": "wrong-key"})
    assert (code, output) == (
        1,
        "error: plan-signed.json: its signature is not FLOWKIT_PLAN_KEY's: it was signed with "
        "another key; plan again with this one\n",
    )
    with pytest.raises(loader.LoaderError, match="the saved plan was made for local:/tmp/"):
        loader.apply("plan.json")
    # Refused before anything was written: no database, no state record.
    assert sorted(p.name for p in here.iterdir()) == [
        "compat.yaml", "config.json", "movements_daily.csv", "plan-signed.json", "plan.json",
        "residents_monthly.csv",
    ]  # fmt: skip


@pytest.fixture
def where_planned(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """plans/ copied to where it was made, the only place its plans apply, and made the
    working directory; one test at a time on this machine (the path is fixed)."""
    made_in = Path(MADE_FOR.removeprefix("local:")).parent
    made_in.parent.mkdir(exist_ok=True)
    with open(made_in.parent / ".lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        shutil.rmtree(made_in, ignore_errors=True)
        shutil.copytree(COMPAT / "plans", made_in)
        monkeypatch.chdir(made_in)
        try:
            yield made_in
        finally:
            monkeypatch.chdir(COMPAT)
            shutil.rmtree(made_in, ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "key"),
    [(("plan.json",), None), (("plan-signed.json",), KEY),
     (("compat.yaml", "--reviewed", "plan.json"), None)],
    ids=["saved", "signed", "reviewed"],
)  # fmt: skip
def test_a_saved_plan_is_carried_out_where_it_was_made(
    where_planned: Path, args: tuple[str, ...], key: str | None
) -> None:
    env = {"FLOWKIT_PLAN_KEY": key} if key else None
    assert run("apply", *args, "-q", env=env) == (
        0,
        "Apply complete: 9 done, 0 failed, 0 skipped\n",
    )
    assert len(database_datasets(where_planned / "compat.db")) == 6
    assert run("plan", "compat.yaml") == (0, NO_CHANGES)
