"""Unit tests of loader/run.py: opening a run (the manifest for one target, its record
with any journal folded in, refused for an unset variable or another target's record),
how a record names its target, the connection and its reader check, the actual state,
and plans made offline or refreshed against an embedded backend (a SQLite file in
tmp_path).

Where a backend must report identities (which the embedded one never does), a small
fake kind is registered under its own scheme through `factory.register`, as a plugin
would be, and removed again after the test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import loader
from loader.backends import factory
from loader.backends.local import AbsentBackend, LocalBackend
from loader.model import (
    DatasetKey,
    Identity,
    LoaderError,
    Role,
    SetupConfig,
    Target,
)
from loader.notes import NotRefreshed
from loader.planner import Action, DatasetTarget, GrantTarget, Reason, Subject
from loader.record import DatasetDropped, Observed, Record, event_json
from loader.run import (
    Connection,
    actual_state,
    check_reader_sees_everything,
    connect,
    is_targets_record,
    make_run_plan,
    open_run,
    other_target_message,
    plan,
    read_record,
    recorded_url,
    unset_variables,
)
from loader.state import Document, StateStore
from tests.helpers import write_manifest

FREE = "read:free_data"
RESIDENTS = (
    "month,pcod,residents,arrived\n"
    "2021-01-01,EX01-01,10,1\n"
    "2021-01-01,EX01-02,20,2\n"
    "2021-03-01,EX01-01,11,3\n"
)
FREE_RESIDENTS = f"access:\n  {FREE}:\n    - indicator: residents.residents\n"
DEFAULT_TARGET = "local: {url: 'local:state/test.db'}"  # as tests/helpers.py writes it


def residents(month: int, indicator: str = "residents") -> DatasetKey:
    """A residents dataset's identity at District (srid 2), Month (trid 2)."""
    return DatasetKey("residents", f"residents.{indicator}", 2, 2, f"2021-{month:02d}-01 00:00:00")


JAN, MAR = residents(1), residents(3)
ALL_KEYS = {JAN, MAR, residents(1, "arrived"), residents(3, "arrived")}


def manifest_in(directory: Path, target: str = DEFAULT_TARGET) -> Path:
    """The small residents manifest, its `local` target written as `target`."""
    manifest = write_manifest(directory, {"residents.csv": RESIDENTS}, access=FREE_RESIDENTS)
    manifest.write_text(manifest.read_text().replace(DEFAULT_TARGET, target))
    return manifest


# ---------------------------------------------------------------------------------------
# unset_variables, recorded_url, other_target_message, is_targets_record


def test_unset_variables_names_each_reference_left_in_the_text_once_and_sorted() -> None:
    # Text as substitution leaves it: a variable the environment does not set, and that
    # has no default, stays written as ${NAME}.
    text = "https://${HOST}/v1 ${STATE_DIR}/prod.json ${HOST}"
    assert unset_variables(text) == ["HOST", "STATE_DIR"]
    assert unset_variables("local:/srv/flowkit/db.sqlite /srv/state.json") == []
    assert unset_variables("$HOME/x {HOME}") == []  # only the ${...} form is a reference


def test_recorded_url_names_an_embedded_database_relative_to_the_record_beside_it() -> None:
    local = Target("local", "local:/srv/deploy/db/flowkit.db", "/srv/deploy/state/rec.json")
    assert recorded_url(local, "/srv/deploy/state/rec.json") == "local:../db/flowkit.db"
    assert recorded_url(local, "/srv/deploy/rec.json") == "local:db/flowkit.db"
    # A record in a remote store cannot move with the database: the URL as it is.
    assert recorded_url(local, "s3://bucket/rec.json") == "local:/srv/deploy/db/flowkit.db"
    remote = Target("prod", "https://flowkit.example.org/v1", "/srv/state/prod.json")
    assert recorded_url(remote, "/srv/state/prod.json") == "https://flowkit.example.org/v1"


def test_is_targets_record_accepts_no_url_the_targets_url_or_its_relative_form() -> None:
    target = Target("local", "local:/srv/deploy/db/flowkit.db", "/srv/deploy/state/rec.json")
    here = "/srv/deploy/state/rec.json"
    assert is_targets_record(Record(), target, here)  # never applied yet
    assert is_targets_record(Record(target_url=target.url), target, here)
    assert is_targets_record(Record(target_url="local:../db/flowkit.db"), target, here)
    # The relative form holds only from where the record is.
    moved = "/srv/deploy/state/old/rec.json"
    assert not is_targets_record(Record(target_url="local:../db/flowkit.db"), target, moved)
    assert not is_targets_record(Record(target_url="https://other.example.org/v1"), target, here)


def test_other_target_message_names_both_targets_and_the_way_out() -> None:
    message = other_target_message(
        "/ci/prod.json", "https://old.example.org/v1", "https://new.example.org/v1"
    )
    assert message == (
        "/ci/prod.json: this state record was applied to https://old.example.org/v1, not "
        "https://new.example.org/v1: give each target its own state (if it is the same "
        "backend at a new address, set target_url in the record)"
    )


def test_other_target_message_quotes_a_damaged_recorded_url_on_one_short_line() -> None:
    # target_url comes from a file that may hold anything: cut to 60 characters, escaped.
    damaged = "https://" + "x" * 80 + "\n/v1"
    message = other_target_message("rec.json", damaged, "local:/db")
    assert "\n" not in message
    assert f"applied to https://{'x' * 49}..., not local:/db:" in message


# ---------------------------------------------------------------------------------------
# read_record and open_run


def test_read_record_folds_in_the_journal_an_interrupted_apply_left(tmp_path: Path) -> None:
    applied = loader.apply(manifest_in(tmp_path))
    assert applied.result.ok
    store = StateStore(str(tmp_path / "manifest.local.state.json"))
    document = store.read()
    # An apply that dropped one dataset and was killed before it wrote the record.
    journal = store.journal()
    journal.start(document)
    journal.append(event_json(DatasetDropped(MAR)))
    read, record, pending = read_record(store)
    assert read == document
    assert set(record.datasets) == ALL_KEYS - {MAR}
    assert pending.id == journal.id and len(pending.entries) == 1
    # The stored record itself is untouched: folding in is the next write's.
    assert set(Record.from_content(store.read().content, "").datasets) == ALL_KEYS


def test_open_run_reads_the_manifest_for_its_target_and_the_record_it_applied(
    tmp_path: Path,
) -> None:
    manifest = manifest_in(tmp_path)
    assert loader.apply(manifest).result.ok
    run = open_run(manifest)
    assert run.target.name == "local"
    assert run.target.url == f"local:{tmp_path / 'state' / 'test.db'}"
    assert run.store.location == str(tmp_path / "manifest.local.state.json")
    assert set(run.record.datasets) == ALL_KEYS
    # The record names the database relative to itself.
    assert run.record.target_url == "local:state/test.db"
    assert set(run.desired.datasets) == ALL_KEYS
    assert run.scopes() == {FREE}


def test_open_run_takes_variables_from_the_environment_it_is_given(tmp_path: Path) -> None:
    manifest = manifest_in(tmp_path, "local: {url: 'local:${RUN_TEST_DB}'}")
    database = tmp_path / "given.db"
    run = open_run(manifest, environ={"RUN_TEST_DB": str(database)})
    assert run.target.url == f"local:{database}"
    assert run.environ == {"RUN_TEST_DB": str(database)}


def test_open_run_refuses_a_url_that_names_an_unset_variable_in_one_line(tmp_path: Path) -> None:
    manifest = manifest_in(tmp_path, "local: {url: 'local:${RUN_TEST_UNSET_DB}'}")
    with pytest.raises(LoaderError) as refused:
        open_run(manifest, environ={})
    assert str(refused.value) == (
        "target local: RUN_TEST_UNSET_DB not set in the environment (its url or state needs it)"
    )


def test_open_run_refuses_a_state_location_that_names_an_unset_variable(tmp_path: Path) -> None:
    manifest = manifest_in(
        tmp_path,
        "local: {url: 'local:db.sqlite', state: '${RUN_TEST_STATE}/rec.json'}",
    )
    with pytest.raises(LoaderError, match=r"^target local: RUN_TEST_STATE not set in the"):
        open_run(manifest, environ={})
    # A default is no unset variable: the url is substituted before the check.
    (tmp_path / "d").mkdir()
    defaulted = manifest_in(tmp_path / "d", "local: {url: 'local:${RUN_TEST_UNSET:-db.sqlite}'}")
    run = open_run(defaulted, environ={})
    assert run.target.url == f"local:{tmp_path / 'd' / 'db.sqlite'}"


def test_open_run_refuses_the_record_of_another_target(tmp_path: Path) -> None:
    manifest = manifest_in(tmp_path)
    store = StateStore(str(tmp_path / "manifest.local.state.json"))
    elsewhere = "https://elsewhere.example.org/v1"
    store.write(Document.new(), Record(target_url=elsewhere).to_content())
    with pytest.raises(LoaderError) as refused:
        open_run(manifest)
    target_url = f"local:{tmp_path / 'state' / 'test.db'}"
    assert str(refused.value) == other_target_message(store.location, elsewhere, target_url)
    # Given another state location, the same manifest opens.
    assert open_run(manifest, state=str(tmp_path / "own.json")).record == Record()


def test_run_datasets_reads_only_the_keys_asked_for(tmp_path: Path) -> None:
    run = open_run(manifest_in(tmp_path))
    found = list(run.datasets({MAR}))
    assert [d.key for d in found] == [MAR]
    assert list(found[0].values) == [11 * 10**9]  # the one value of March's residents


# ---------------------------------------------------------------------------------------
# check_reader_sees_everything, connect, Connection


def test_a_reader_that_does_not_see_everything_is_refused_naming_its_permissions() -> None:
    viewer = Identity("viewer@clients", frozenset({FREE}), frozenset({FREE, "read:premium"}))
    with pytest.raises(LoaderError) as refused:
        check_reader_sees_everything(viewer)
    assert str(refused.value) == (
        "the reader credential's token cannot see every dataset (its permissions: "
        "read:free_data, read:premium; refresh needs the admin permission): give the "
        "reader role a token with it, or leave credentials.reader out to read with the "
        "admin's"
    )
    nothing = Identity("nobody@clients", frozenset(), frozenset())
    with pytest.raises(LoaderError, match=r"\(its permissions: none;"):
        check_reader_sees_everything(nothing)


def test_a_reader_that_sees_everything_or_no_reader_at_all_passes() -> None:
    admin = Identity("loader@clients", frozenset({FREE}), frozenset({"admin"}))
    check_reader_sees_everything(admin)
    check_reader_sees_everything(None)  # the embedded backend: no credentials to check


def test_a_reader_whose_identity_could_not_be_had_raises_that_error() -> None:
    failed = LoaderError("token endpoint: 401 access_denied")
    with pytest.raises(LoaderError) as raised:
        check_reader_sees_everything(failed)
    assert raised.value is failed


@dataclass
class Watched:
    """A backend of the `watched:` kind: it reports the reader identity it was made with
    and notes what is asked of it. It answers only the Backend protocol's calls that
    connect makes."""

    reader_identity: Identity | LoaderError | None
    readable: frozenset[str]  # the scopes it can look as
    closed: bool = False
    waited: list[float] = field(default_factory=list)
    readers_asked: list[str] = field(default_factory=list)

    def wait_ready(self, seconds: float) -> str:
        self.waited.append(seconds)
        return "watched: ready"

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        wanted = set(roles)
        if self.reader_identity is None or Role.READER not in wanted:
            return {}
        return {Role.READER: self.reader_identity}

    def reader(self, scope: str) -> Watched | None:
        self.readers_asked.append(scope)
        return Watched(None, frozenset()) if scope in self.readable else None

    def close(self) -> None:
        self.closed = True


READERS = {
    "blind": Identity("viewer@clients", frozenset({FREE}), frozenset({FREE})),
    "admin": Identity("loader@clients", frozenset({FREE}), frozenset({"admin"})),
    "broken": LoaderError("token endpoint: 401 access_denied"),
}


@pytest.fixture
def watched() -> Iterator[list[Watched]]:
    """The `watched:NAME` kind registered for one test (NAME picks the reader identity
    of READERS); the list of every backend it opened."""
    opened: list[Watched] = []

    def open_watched(target: Target, setup: SetupConfig, opening: factory.Opening) -> Watched:
        name = target.url.removeprefix("watched:")
        opened.append(Watched(READERS[name], frozenset({FREE})))
        return opened[-1]

    kind = factory.BackendKind("watched:NAME", r"watched:\w+", open_watched,
                               needs_credentials=False)  # fmt: skip
    factory.register("watched", kind)
    try:
        yield opened
    finally:  # other tests list the URL forms the kinds give
        factory.KINDS.pop("watched", None)


def test_connect_refuses_a_reader_that_cannot_see_everything_and_closes_the_backend(
    tmp_path: Path, watched: list[Watched]
) -> None:
    run = open_run(manifest_in(tmp_path, "watched: {url: 'watched:blind'}"))
    with pytest.raises(LoaderError, match=r"^the reader credential's token cannot see every"):
        connect(run)
    assert len(watched) == 1 and watched[0].closed  # nothing left open


def test_connect_raises_why_the_readers_identity_could_not_be_had(
    tmp_path: Path, watched: list[Watched]
) -> None:
    run = open_run(manifest_in(tmp_path, "watched: {url: 'watched:broken'}"))
    with pytest.raises(LoaderError, match=r"^token endpoint: 401 access_denied$"):
        connect(run)
    assert watched[0].closed


def test_connect_opens_one_reader_per_scope_that_can_have_one(
    tmp_path: Path, watched: list[Watched]
) -> None:
    access = (
        f"access:\n  {FREE}:\n    - indicator: residents.residents\n"
        "  read:premium_data:\n    - indicator: residents.arrived\n"
    )
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=access)
    manifest.write_text(manifest.read_text().replace(DEFAULT_TARGET, "w: {url: 'watched:admin'}"))
    run = open_run(manifest)
    connection = connect(run)
    backend = watched[0]
    # Every scope of the run is asked for, in order; the kind can look as FREE only.
    assert backend.readers_asked == [FREE, "read:premium_data"]
    assert set(connection.readers) == {FREE}
    assert backend.waited == []  # no wait asked: the first request tells
    connection.close()
    assert backend.closed


def test_connect_waits_for_the_backend_when_asked_and_a_connection_closes_on_exit(
    tmp_path: Path, watched: list[Watched]
) -> None:
    run = open_run(manifest_in(tmp_path, "watched: {url: 'watched:admin'}"))
    with connect(run, wait_ready=5) as connection:
        assert isinstance(connection, Connection)
        assert watched[0].waited == [5]
        assert not watched[0].closed
    assert watched[0].closed


def test_connect_read_only_to_a_database_not_there_yet_creates_nothing(tmp_path: Path) -> None:
    run = open_run(manifest_in(tmp_path))
    with connect(run, read_only=True) as connection:
        assert isinstance(connection.backend, AbsentBackend)
        assert set(connection.readers) == {FREE}
    assert not (tmp_path / "state" / "test.db").exists()


# ---------------------------------------------------------------------------------------
# actual_state, make_run_plan, plan


def test_the_actual_state_offline_is_the_record_unrefreshed(tmp_path: Path) -> None:
    manifest = manifest_in(tmp_path)
    assert loader.apply(manifest).result.ok
    run = open_run(manifest)
    actual = actual_state(run, None)
    assert actual.record == run.record
    assert actual.observed == Observed()


def test_the_actual_state_refreshed_sees_a_dataset_deleted_by_other_means(tmp_path: Path) -> None:
    manifest = manifest_in(tmp_path)
    assert loader.apply(manifest).result.ok
    run = open_run(manifest)
    database = LocalBackend(run.target.local_path)
    summary = run.record.datasets[MAR].summary
    database.delete_dataset(summary)
    database.close()
    with connect(run) as connection:
        actual = actual_state(run, connection)
    assert actual.observed.refreshed
    assert actual.observed.vanished == frozenset({MAR})
    # The embedded backend looks as each scope's reader by itself.
    assert actual.observed.scopes_checked == frozenset({FREE})


def test_a_fresh_deployment_plans_the_setup_every_dataset_and_its_grants(tmp_path: Path) -> None:
    made = plan(manifest_in(tmp_path))
    assert made.refreshed
    # In apply order: the setup, then dataset by dataset (sorted by key) its write and at
    # once its grants; only residents.residents has a rule.
    assert [(c.action, c.subject, getattr(c.target, "key", None)) for c in made.changes] == [
        (Action.CREATE, Subject.SETUP, None),
        (Action.CREATE, Subject.DATASET, residents(1, "arrived")),
        (Action.CREATE, Subject.DATASET, residents(3, "arrived")),
        (Action.CREATE, Subject.DATASET, JAN),
        (Action.CREATE, Subject.GRANT, JAN),
        (Action.CREATE, Subject.DATASET, MAR),
        (Action.CREATE, Subject.GRANT, MAR),
    ]
    assert not (tmp_path / "state" / "test.db").exists()  # planning writes nothing


def test_an_offline_plan_trusts_the_record_and_a_refreshed_one_repairs_drift(
    tmp_path: Path,
) -> None:
    manifest = manifest_in(tmp_path)
    assert loader.apply(manifest).result.ok
    run = open_run(manifest)
    database = LocalBackend(run.target.local_path)
    database.delete_dataset(run.record.datasets[MAR].summary)  # behind the loader's back
    database.close()
    offline = plan(manifest, offline=True)
    assert not offline.refreshed and offline.changes == ()
    assert NotRefreshed() in offline.notes
    refreshed = plan(manifest)
    assert refreshed.refreshed
    # Rewritten, and its grant given again (the write drops it).
    assert [(c.action, c.reason, c.subject, getattr(c.target, "key", None))
            for c in refreshed.changes] == [
        (Action.UPDATE, Reason.DRIFTED, Subject.DATASET, MAR),
        (Action.CREATE, Reason.REGRANT, Subject.GRANT, MAR),
    ]  # fmt: skip
    assert NotRefreshed() not in refreshed.notes


def test_make_run_plan_keeps_what_it_observed_and_says_where_it_came_from(
    tmp_path: Path,
) -> None:
    manifest = manifest_in(tmp_path)
    assert loader.apply(manifest).result.ok
    run = open_run(manifest)
    offline = make_run_plan(run, None)
    assert run.observed == Observed()
    with connect(run, read_only=True) as connection:
        refreshed = make_run_plan(run, connection)
        again = make_run_plan(run, connection)
    assert run.observed.refreshed  # the last refresh, for apply to use
    origin = refreshed.origin
    assert (origin.target, origin.url, origin.verify) == ("local", run.target.url, False)
    assert origin.manifest_path == str(manifest.absolute())
    # The same inputs give the same fingerprint; what the server showed is an input.
    assert again.fingerprint == refreshed.fingerprint
    assert offline.fingerprint != refreshed.fingerprint


def test_make_run_plan_narrows_to_the_selected_datasets(tmp_path: Path) -> None:
    run = open_run(manifest_in(tmp_path))
    made = make_run_plan(run, None, only=["indicator=residents.arrived"])
    assert made.only == ("indicator=residents.arrived",)
    written = [c.target.key for c in made.changes if isinstance(c.target, DatasetTarget)]
    assert sorted(written) == [residents(1, "arrived"), residents(3, "arrived")]
    # residents.arrived has no grant: none of the residents' grants comes with it.
    assert not any(isinstance(c.target, GrantTarget) for c in made.changes)
