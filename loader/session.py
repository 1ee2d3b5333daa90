"""One run of the loader against one target: the manifest and its data, the backend, the
state record and its lock, put together for plan, apply, import and status.

The Python API (`loader.plan`, `loader.apply`, ...) and the CLI both go through here.
Nothing in this module prints: callers get values, or a LoaderError.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from loader.backends.factory import open_backend, open_readers
from loader.backends.local import apply_lock
from loader.data import read_datasets
from loader.execute import DEFAULT_PARALLELISM, ApplyResult, Executor, Progress
from loader.execute import Status as ChangeStatus
from loader.manifest import display_path
from loader.model import (
    Backend,
    Dataset,
    DatasetKey,
    LoaderError,
    Manifest,
    Role,
    SetupConfig,
    Target,
    excerpt,
    loader_version,
)
from loader.planfile import PlanRefused, SavedPlan, comparable_changes, is_plan_file
from loader.planner import Action, Plan, Selector, Subject, make_plan
from loader.record import (
    Actual,
    ApplyEntry,
    Desired,
    Observed,
    Record,
    entity_digest,
    groups,
    replay,
    writing_entry,
)
from loader.refresh import (
    Grids,
    ImportReport,
    adopt_languages,
    desired_state,
    import_record,
    other_writers_now,
    refresh,
)
from loader.render import plan_data
from loader.state import Document, Pending, StateError, StateStore
from loader.timegrid import from_backend_dt
from loader.validate import ValidationReport, validate

SCOPES_OF = {Role.ADMIN: ["admin"], Role.UPDATER: ["write:data"], Role.READER: ["read:free_data"]}


@dataclass
class Run:
    """A manifest read for one target, its data summarised, and its state record."""

    path: str
    manifest: Manifest
    target: Target
    setup: SetupConfig
    report: ValidationReport
    store: StateStore
    document: Document
    record: Record  # the stored record with any leftover journal folded in
    pending: Pending = field(default_factory=lambda: Pending(None, []))
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    observed: Observed = field(default_factory=Observed)  # by the last refresh

    @cached_property
    def desired(self) -> Desired:
        return desired_state(self.manifest, self.setup, self.report.summaries)

    def datasets(self, keys: set[DatasetKey]) -> Iterator[Dataset]:
        """The canonical datasets of `keys`, read only from the files that hold them."""
        sources = {s.source for s in self.report.summaries if s.key in keys}
        for spec in self.manifest.datasets:
            for file in spec.files:
                shown = display_path(file)
                if spec.pattern not in sources and shown not in sources:
                    continue
                found, _ = read_datasets(spec, file, self.setup, shown)
                yield from (d for d in found if d.key in keys)

    def reread(self) -> None:
        """The record again (after taking the lock, someone may have written it)."""
        self.document, self.record, self.pending = read_record(self.store)


def recorded_url(target: Target, state_location: str) -> str:
    """How a record names its target: a remote URL as it is; an embedded database
    relative to a record file beside it, so that the two can move together."""
    if target.is_local and "://" not in state_location:
        here = Path(state_location).absolute().parent
        return "local:" + os.path.relpath(target.local_path, here)
    return target.url


def read_record(store: StateStore) -> tuple[Document, Record, Pending]:
    document = store.read()
    record = Record.from_content(document.content, store.location)
    pending = store.pending(document)
    journal = f"{store.location}.journal"
    return document, replay(record, pending.entries, journal, pending.lines), pending


def open_run(
    path: str | Path,
    *,
    target: str | None = None,
    state: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Run:
    env = dict(os.environ if environ is None else environ)
    report = validate(path, target=target, environ=env)
    manifest = report.manifest_or_raise()
    chosen = manifest.target(target)
    unset = sorted(set(re.findall(r"\$\{(\w+)", f"{chosen.url} {state or chosen.state}")))
    if unset:
        raise LoaderError(
            f"target {chosen.name}: {', '.join(unset)} not set in the environment (its url "
            "or state needs it)"
        )
    store = StateStore(state or chosen.state)
    document, record, pending = read_record(store)
    if record.target_url not in (None, chosen.url, recorded_url(chosen, store.location)):
        raise LoaderError(
            f"{store.location}: this state record was applied to {excerpt(record.target_url)}, not "
            f"{chosen.url}: give each target its own state (if it is the same backend at a "
            "new address, set target_url in the record)"
        )
    return Run(str(path), manifest, chosen, manifest.setup(chosen.name), report, store,
               document, record, pending, env)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Plan


@dataclass
class Connection:
    """The target's backend, and one reader per scope that can check grants."""

    backend: Backend
    readers: dict[str, Backend]

    def close(self) -> None:
        for backend in (self.backend, *self.readers.values()):
            close = getattr(backend, "close", None)
            if close is not None:
                close()


def connect(
    run: Run, *, wait_ready: float = 0, parallelism: int = 8, read_only: bool = False
) -> Connection:
    backend = open_backend(run.target, run.setup, environ=run.environ, parallelism=parallelism,
                           read_only=read_only)  # fmt: skip
    wait = getattr(backend, "wait_ready", None)
    if wait is not None and wait_ready > 0:  # otherwise the first real request tells
        wait(wait_ready)
    check_reader_sees_everything(backend)
    scopes = {s for d in run.record.datasets.values() for s in d.scopes}
    scopes |= {s for v in run.desired.scopes.values() for s in v}
    readers = open_readers(run.target, backend, scopes, environ=run.environ)
    return Connection(backend, readers)


def check_reader_sees_everything(backend: Backend) -> None:
    """A refresh reads with the reader role: a token that cannot see every dataset (the
    automatic `admin` mapping) would make the loader take what it cannot see for gone."""
    tokens = getattr(backend, "tokens", None)
    if not tokens or Role.READER not in tokens:
        return
    token = tokens[Role.READER].current()
    if "admin" not in token.permissions:
        seen = ", ".join(sorted(token.permissions)) or "none"
        raise LoaderError(
            f"the reader credential's token cannot see every dataset (its permissions: "
            f"{seen}; refresh needs the admin permission): give the reader role a token "
            "with it, or leave credentials.reader out to read with the admin's"
        )


def actual_state(run: Run, connection: Connection | None, *, verify: bool = False) -> Actual:
    observed = Observed()
    if connection is not None:
        desired = run.desired
        observed = refresh(
            connection.backend, run.record, desired, run.setup, readers=connection.readers,
            verify=run.datasets(set(desired.datasets)) if verify else None,
        )  # fmt: skip
    return Actual(run.record, observed)


def record_digest(record: Record) -> str:
    content = {k: v for k, v in record.to_content().items() if k != "history"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def fingerprint(run: Run, actual: Actual, only: Iterable[str], verify: bool, made: Plan) -> str:
    """A digest of every input of a plan: manifest, config, data, target, state record and
    what the server showed. A saved plan applies only while it is unchanged."""
    desired = run.desired
    parts = {
        "manifest": hashlib.sha256(Path(run.path).read_bytes()).hexdigest(),
        "target": [run.target.name, run.target.url],
        "config": sorted(
            [e.kind.value, str(e.id), entity_digest(e.body)] for e in desired.entities
        ),
        "data": sorted([str(k), s.digest] for k, s in desired.datasets.items()),
        "grants": sorted([str(k), sorted(v)] for k, v in desired.scopes.items()),
        # What the record says, not its serial: folding a journal left behind changes the
        # serial, not the content.
        "state": record_digest(actual.record),
        "server": actual.observed.view_digest,
        "only": sorted(only),
        "verify": verify,
        # The plan itself, and the code that made it: the same inputs planned by another
        # loader version may not give the same changes.
        "loader": loader_version(),
        # The changes, without the data files' display paths (they depend on the working
        # directory, the content does not; the data digests are above).
        "changes": comparable_changes(plan_data(made)["changes"]),
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def make_run_plan(
    run: Run,
    connection: Connection | None,
    *,
    only: Iterable[str] = (),
    verify: bool = False,
) -> Plan:
    selectors = [Selector.parse(text) for text in only]
    actual = actual_state(run, connection, verify=verify)
    run.observed = actual.observed
    plan = make_plan(run.desired, actual, selectors)
    return Plan(
        plan.changes, plan.unchanged, plan.notes, plan.refreshed, plan.only,
        fingerprint=fingerprint(run, actual, plan.only, verify, plan),
        target=run.target.name, manifest=display_path(run.path),
        inputs={"target_url": run.target.url, "verify": verify,
                "manifest_path": str(Path(run.path).absolute())},
    )  # fmt: skip


def plan(
    manifest: str | Path,
    *,
    target: str | None = None,
    offline: bool = False,
    verify: bool = False,
    only: Iterable[str] = (),
    state: str | None = None,
    wait_ready: float = 0,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """What applying `manifest` would change on its target (nothing is written)."""
    run = open_run(manifest, target=target, state=state, environ=environ)
    if offline:
        return make_run_plan(run, None, only=only)
    connection = connect(run, wait_ready=wait_ready, read_only=True)
    try:
        return make_run_plan(run, connection, only=only, verify=verify)
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------
# Apply


@dataclass
class Applied:
    plan: Plan
    result: ApplyResult
    record: Record


def _git_commit(directory: Path) -> str | None:
    """The manifest's repository's HEAD, marked `-dirty` when tracked files differ from it
    (what was applied is then not exactly that commit); None outside a repository."""

    def git(*args: str) -> str | None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["git", *args], cwd=directory, capture_output=True,
                                  text=True, timeout=10, check=False)  # fmt: skip
            if done.returncode == 0:
                return done.stdout.strip()
        return None

    head = git("rev-parse", "HEAD")
    if not head:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if changed else head


def _subjects(backend: Backend, roles: Iterable[Role]) -> str:
    tokens = getattr(backend, "tokens", None)
    if tokens is None:
        principal = getattr(backend, "principal", None)
        return str(getattr(principal, "subject", "local"))
    found = []
    for role in roles:
        if role in tokens:
            subject = tokens[role].current().subject
            if subject not in found:
                found.append(subject)
    return ", ".join(found) or "unknown"


def apply(
    manifest: str | Path,
    *,
    target: str | None = None,
    only: Iterable[str] = (),
    verify: bool = False,
    state: str | None = None,
    allow_destroy: bool = False,
    max_destroy: int | None = None,
    show: Callable[[Plan], None] | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    progress: Progress | None = None,
    wait_ready: float = 0,
    holder: str | None = None,
    environ: Mapping[str, str] | None = None,
    reviewed: str | Path | None = None,
) -> Applied:
    """Plan `manifest` against its target and carry the plan out, holding the state lock;
    given a saved plan (a `plan --out` file as `manifest`), only if that plan still
    describes the target exactly; given a `reviewed` plan file, only if the plan has its
    changes (see loader/planfile.py). `show` sees the
    plan first (before any refusal), `confirm` may then decline it."""
    plan_file = reviewed
    if is_plan_file(manifest):  # a saved plan: everything comes from it
        if reviewed is not None:
            raise LoaderError(
                "--reviewed needs a manifest to plan, not a saved plan: "
                "`flowkit-loader apply MANIFEST --reviewed PLAN`"
            )
        plan_file = manifest
    saved = None
    if plan_file is not None:
        if only or verify or target:
            raise LoaderError(
                "--target, --only and --verify come from the saved plan; they cannot be changed"
            )
        saved = SavedPlan.read(plan_file, reviewed=reviewed is not None, environ=environ)
        saved.check_source()
        manifest = manifest if saved.reviewed else saved.manifest
        target, only, verify = saved.target, saved.only, saved.verify
    run = open_run(manifest, target=target, state=state, environ=environ)
    if saved is not None:
        saved.check_target(run.target.url)
    # The locks first, so that a refused apply has touched neither the backend
    # (connecting creates an embedded database) nor its state record: an embedded
    # database's OS lock (one writer per database, whatever state record the other writer
    # uses; a local check that leaves nothing behind), then the state record's lock, the
    # first thing apply writes (a folder that cannot be written, a lock held, refuse).
    with apply_lock(run.target, holder), run.store.held(StateStore.holder(holder)):
        connection = connect(run, wait_ready=wait_ready, parallelism=max(parallelism, 1) * 2)
        try:
            return _plan_and_apply(run, connection, saved, only, verify, allow_destroy,
                                   max_destroy, show, confirm, parallelism, progress)  # fmt: skip
        finally:
            connection.close()


def _plan_and_apply(
    run: Run,
    connection: Connection,
    saved: SavedPlan | None,
    only: Iterable[str],
    verify: bool,
    allow_destroy: bool,
    max_destroy: int | None,
    show: Callable[[Plan], None] | None,
    confirm: Callable[[Plan], bool] | None,
    parallelism: int,
    progress: Progress | None,
) -> Applied:
    """Under the lock: plan against a fresh read of the record, check, ask, apply."""
    run.reread()
    if run.pending.id:  # an interrupted apply's journal: fold it in before anything else
        run.document = run.store.write(run.document, run.record.to_content(),
                                       folded=run.pending.id)  # fmt: skip
        run.store.journal().discard()
        run.pending = Pending(None, [])
    the_plan = make_run_plan(run, connection, only=only, verify=verify)
    if run.observed.duplicated or run.observed.unexplained:
        raise AnotherWriter(run.observed.duplicated, run.observed.unexplained, run.store.location)
    if saved is not None:
        saved.check(the_plan)
    if show is not None and the_plan.has_changes:
        show(the_plan)
    _check_destroy(the_plan, allow_destroy, max_destroy)
    if not the_plan.has_changes or (confirm is not None and not confirm(the_plan)):
        return Applied(the_plan, ApplyResult(), run.record)
    preflight = getattr(connection.backend, "preflight", None)
    if preflight is not None:
        preflight({role: SCOPES_OF[role] for role in the_plan.roles()})
    return _execute(run, connection.backend, the_plan, parallelism, progress)


def _check_destroy(the_plan: Plan, allow: bool, limit: int | None) -> None:
    destructive = the_plan.destructive
    if not destructive:
        return
    listed = "; ".join(f"{c.action.value} {c.describe()}" for c in destructive[:5])
    more = f" and {len(destructive) - 5} more" if len(destructive) > 5 else ""
    if not allow:
        raise PlanRefused(
            f"the plan destroys {len(destructive)} thing(s) ({listed}{more}); "
            "apply again with --allow-destroy to proceed"
        )
    if limit is not None and len(destructive) > limit:
        raise PlanRefused(
            f"the plan destroys {len(destructive)} thing(s), more than --max-destroy {limit} "
            f"({listed}{more})"
        )


def _execute(
    run: Run, backend: Backend, the_plan: Plan, parallelism: int, progress: Progress | None
) -> Applied:
    journal = run.store.journal()
    journal.start(run.document)
    entries: list[Mapping[str, Any]] = []

    def record_change(entry: Mapping[str, Any]) -> None:
        entries.append(entry)  # first: the record written at the end holds it in any case
        journal.append(entry)

    # Before the first write: what this apply sets out to write. Killed before recording
    # one of them, the next run knows whose a dataset it finds on the server is.
    writing = [c.key for c in the_plan.changes if c.subject is Subject.DATASET
               and c.action is not Action.DELETE and c.key is not None]  # fmt: skip
    if writing:
        record_change(writing_entry(writing))
    executor = Executor(backend, record_change, run.datasets, run.setup.entities,
                        parallelism=parallelism, progress=progress)  # fmt: skip
    result = executor.run(the_plan)
    record = adopt_languages(replay(run.record, list(entries), run.store.location),
                             run.desired, run.observed)  # fmt: skip
    never_sent = {o.change.key for o in result.outcomes if o.status is ChangeStatus.SKIPPED
                  and o.change.subject is Subject.DATASET}  # fmt: skip
    record = replace(record, in_doubt=record.in_doubt - never_sent)
    if result.outcomes and not result.interrupted and not result.stopped:
        # Two writers that started together both saw nothing of the other's: the end
        # of an apply is where their collisions show (one query per indicator, more
        # only where the server holds datasets the record does not know). A backend that
        # stopped answering cannot tell; the record is written all the same, and the
        # next plan looks again.
        with contextlib.suppress(LoaderError):
            duplicated, unexplained = other_writers_now(backend, record, run.desired.datasets,
                                                        run.setup)  # fmt: skip
            if duplicated or unexplained:
                result.others = another_writer_message(duplicated, unexplained,
                                                       run.store.location)  # fmt: skip
    outcome = "interrupted" if result.interrupted else "complete" if result.ok else "partial"
    entry = ApplyEntry(
        when=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        who=_subjects(backend, the_plan.roles()),
        commit=_git_commit(Path(run.path).absolute().parent),
        loader_version=loader_version(),
        plan_fingerprint=the_plan.fingerprint,
        outcome=outcome,
        counts=result.counts(),
    )
    record = replace(record, history=(*record.history, entry),
                     target_url=recorded_url(run.target, run.store.location))  # fmt: skip
    try:
        run.document = run.store.write(run.document, record.to_content(), folded=journal.id)
    except StateError as error:
        raise UnrecordedChanges(result, len(entries) - journal.durable, error) from None
    # The record names this journal as folded: one left behind is recognised as such.
    with contextlib.suppress(StateError):
        journal.discard()
    return Applied(the_plan, result, record)


class AnotherWriter(LoaderError):
    """Datasets on the server that another writer made: apply refuses to add to them."""

    def __init__(
        self,
        duplicated: Mapping[DatasetKey, frozenset[int]],
        unexplained: Mapping[DatasetKey, int],
        state: str,
    ) -> None:
        super().__init__(
            another_writer_message(duplicated, unexplained, state) + "; nothing was written"
        )


def another_writer_message(
    duplicated: Mapping[DatasetKey, frozenset[int]],
    unexplained: Mapping[DatasetKey, int],
    state: str,
) -> str:
    """What another writer did, and what to do, in one line."""
    parts = []
    if duplicated:
        key, mdids = min(duplicated.items())
        more = f", and {len(duplicated) - 1} more" if len(duplicated) > 1 else ""
        parts.append(
            f"{len(duplicated)} identit{'y is' if len(duplicated) == 1 else 'ies are'} on the "
            f"server more than once ({key}: mdids {', '.join(map(str, sorted(mdids)))}{more}; "
            "only database access can remove all but one)"
        )
    if unexplained:
        key, mdid = min(unexplained.items())
        more = f", and {len(unexplained) - 1} more" if len(unexplained) > 1 else ""
        parts.append(
            f"{len(unexplained)} dataset{'' if len(unexplained) == 1 else 's'} of the manifest "
            f"on the server that no apply of this record wrote ({key}: mdid {mdid}{more}; "
            "`import` takes over data loaded by other means)"
        )
    return (
        "another writer: " + "; ".join(parts) + f". If another apply uses a state record other "
        f"than {state}, give every apply of this target the same one"
    )


class UnrecordedChanges(LoaderError):
    """The apply's record could not be written: what reached the backend, what is lost
    to the record, and what the next apply does about it."""

    def __init__(self, result: ApplyResult, lost: int, error: StateError) -> None:
        counts = result.counts()
        done = counts["done"]
        if lost:
            where = (
                f"{lost} of them could not be recorded (the next apply plans them again: "
                "what it finds on the server it writes once more)"
            )
        else:
            where = "the journal holds them all (the next apply folds it into the record)"
        super().__init__(
            f"{error}: {done} change{'' if done == 1 else 's'} reached the backend and "
            f"{where}; {counts['failed']} failed, {counts['skipped']} skipped. Apply again "
            "once the state record can be written"
        )
        self.result = result
        self.lost = lost


# ---------------------------------------------------------------------------------------
# Import and status


def import_state(
    manifest: str | Path,
    *,
    target: str | None = None,
    state: str | None = None,
    wait_ready: float = 0,
    holder: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ImportReport:
    """Take over what the server holds of the manifest (see refresh.import_record)."""
    run = open_run(manifest, target=target, state=state, environ=environ)
    connection = connect(run, wait_ready=wait_ready, read_only=True)
    try:
        with run.store.held(StateStore.holder(holder)):
            run.reread()
            desired = run.desired
            report = import_record(
                connection.backend, run.record, desired, run.setup,
                run.datasets({k for k in desired.datasets if k not in run.record.datasets}),
                readers=connection.readers,
            )  # fmt: skip
            here = recorded_url(run.target, run.store.location)
            report.record = replace(report.record, target_url=here)
            run.store.write(run.document, report.record.to_content(), folded=run.pending.id)
            run.store.journal().discard()
            return report
    finally:
        connection.close()


@dataclass
class SeriesStatus:
    """One indicator at one resolution: what is loaded."""

    indicator_id: str
    srid: int
    trid: int
    dates: list[str]  # in the resolution's format, loaded
    gaps: list[str]  # steps between the first and last date with nothing loaded
    values: int
    scopes: dict[str, int]  # datasets granted per scope
    vanished: int  # recorded datasets the server no longer shows


@dataclass
class Status:
    target: str
    url: str
    state: str
    series: list[SeriesStatus]
    entities: int
    last_apply: ApplyEntry | None
    refreshed: bool
    pending: int  # journal entries of an interrupted apply
    notes: tuple[str, ...] = ()
    another_writer: str = ""  # what another writer left on the server, and what to do


def status(
    manifest: str | Path,
    *,
    target: str | None = None,
    state: str | None = None,
    offline: bool = False,
    wait_ready: float = 0,
    environ: Mapping[str, str] | None = None,
) -> Status:
    """What the target holds as the record knows it, checked against the server's mdids."""
    run = open_run(manifest, target=target, state=state, environ=environ)
    connection = None if offline else connect(run, wait_ready=wait_ready, read_only=True)
    try:
        actual = actual_state(run, connection)
    finally:
        if connection is not None:
            connection.close()
    grids = Grids(run.setup)
    series = []
    for (_, indicator, srid, trid), keys in groups(run.record.datasets).items():
        grid = grids.by_trid.get(trid)
        moments = [from_backend_dt(k.dt) for k in keys]
        shown = [grid.format(m) if grid else str(m) for m in moments]
        gaps: list[str] = []
        if grid is not None:
            have = set(moments)
            steps = grid.steps_between(moments[0], moments[-1])
            gaps = [grid.format(m) for i in range(steps + 1)
                    if (m := grid.add(moments[0], i)) not in have]  # fmt: skip
        scopes: dict[str, int] = {}
        for key in keys:
            for scope in run.record.datasets[key].scopes:
                scopes[scope] = scopes.get(scope, 0) + 1
        series.append(SeriesStatus(
            indicator, srid, trid, shown, gaps,
            sum(run.record.datasets[k].summary.stats.count for k in keys), scopes,
            sum(1 for k in keys if k in actual.observed.vanished),
        ))  # fmt: skip
    return Status(
        run.target.name, run.target.url, run.store.location, series, len(run.record.entities),
        run.record.history[-1] if run.record.history else None, actual.observed.refreshed,
        len(run.pending.entries), actual.observed.notes,
        another_writer_message(actual.observed.duplicated, actual.observed.unexplained,
                               run.store.location)
        if actual.observed.duplicated or actual.observed.unexplained else "",
    )  # fmt: skip
