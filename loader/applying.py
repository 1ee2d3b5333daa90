"""The two commands that change things: `apply` (plan under the locks, check the plan
against a saved or reviewed one, carry it out, record what was done) and `import` (take
over what the server already holds into the state record).

The order inside apply is the loader's safety argument: the backend's writer lock and the
state record's lock first (a refused apply has touched nothing), then a fresh read of the
record and of the server, the plan, every refusal, and only then the first write, each
change journalled as it completes. Nothing here prints: callers get values.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from loader.backends.factory import writer_lock
from loader.backends.pacing import DEFAULT_CEILING, AdaptiveLimit
from loader.execute import DEFAULT_PARALLELISM, ApplyResult, Executor, OutcomeStatus, Progress
from loader.model import DatasetKey, LoaderError, loader_version, plural
from loader.notebook import running_in_a_notebook
from loader.planfile import PlanRefused, SavedPlan, is_plan_file
from loader.planner import Action, DatasetTarget, Plan
from loader.record import (
    ApplyEntry,
    Event,
    Record,
    RecordBuilder,
    WritingDatasets,
    event_json,
    next_apply,
)
from loader.refresh import ImportReport, adopt_languages, import_record, other_writers_now
from loader.run import Connection, Run, connect, make_run_plan, open_run, recorded_url
from loader.state import Pending, StateError, StateStore

_Found = TypeVar("_Found")


@dataclass
class Applied:
    plan: Plan
    result: ApplyResult
    record: Record
    pacing: AdaptiveLimit | None = None  # with parallelism "auto": the limit it found

    # In a notebook (loader/notebook.py, imported only there).
    def _repr_html_(self) -> str:
        from loader.notebook import applied_html

        return applied_html(self)

    def to_frame(self) -> Any:
        """A pandas DataFrame: one row per change carried out, failed or skipped."""
        from loader.notebook import applied_frame

        return applied_frame(self)


@dataclass(frozen=True)
class ApplyOptions:
    """Everything one apply takes besides its source: where it writes (the target, its
    state record, how long to wait for a service that starts on its first request, the
    lock holder's name, the environment its credentials come from), what it plans
    (`only`, `verify`, a `reviewed` plan file its changes must match), what it may
    destroy, who sees and confirms the plan, and how it sends: `parallelism` writes in
    flight, or "auto" (a remote target: as many as the server takes, found as the apply
    runs, never more than `max_parallelism`; see backends/pacing.py)."""

    target: str | None = None
    state: str | None = None
    wait_ready: float = 0
    holder: str | None = None
    environ: Mapping[str, str] | None = None
    reviewed: str | Path | None = None
    only: tuple[str, ...] = ()
    verify: bool = False
    allow_destroy: bool = False
    max_destroy: int | None = None
    show: Callable[[Plan], None] | None = None  # sees the plan first (before any refusal)
    confirm: Callable[[Plan], bool] | None = None  # may then decline it
    parallelism: int | Literal["auto"] = DEFAULT_PARALLELISM
    max_parallelism: int = DEFAULT_CEILING
    progress: Progress | None = None

    @property
    def threads(self) -> int:
        """Changes carried out at once (with "auto", the adaptive limit gates their
        requests under this)."""
        return self.max_parallelism if self.parallelism == "auto" else max(self.parallelism, 1)


def apply(manifest: str | Path, options: ApplyOptions | None = None, /, **fields: Any) -> Applied:
    """Plan `manifest` against its target and carry the plan out, holding the state lock;
    given a saved plan (a `plan --out` file as `manifest`), only if that plan still
    describes the target exactly; given a `reviewed` plan file, only if the plan has its
    changes (see loader/planfile.py). `fields` set options by name, over `options`:
    `apply("deploy.yaml", allow_destroy=True)`."""
    options = replace(options or ApplyOptions(), **fields)
    options = replace(options, only=tuple(options.only))  # any iterable of selectors
    target, reviewed = options.target, options.reviewed
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
        if options.only or options.verify or target:
            raise LoaderError(
                "--target, --only and --verify come from the saved plan; they cannot be changed"
            )
        saved = SavedPlan.read(plan_file, reviewed=reviewed is not None, environ=options.environ)
        saved.check_source()
        manifest = manifest if saved.reviewed else saved.manifest
        target = saved.target
        options = replace(options, only=saved.only, verify=saved.verify)
    run = open_run(manifest, target=target, state=options.state, environ=options.environ)
    if saved is not None:
        saved.check_target(run.target.url)
    # The locks first, so that a refused apply has touched neither the backend
    # (connecting creates an embedded database) nor its state record: the backend's
    # writer lock (one writer per embedded database, whatever state record the other
    # writer uses; a local check that leaves nothing behind), then the state record's
    # lock, the first thing apply writes (a folder that cannot be written, a lock held,
    # refuse).
    holder = options.holder
    with writer_lock(run.target, holder), run.store.held(StateStore.holder(holder)):
        pacing = AdaptiveLimit(options.max_parallelism) if options.parallelism == "auto" else None
        with connect(run, wait_ready=options.wait_ready, parallelism=options.threads * 2,
                     pacing=pacing) as connection:  # fmt: skip
            return replace(_plan_and_apply(run, connection, saved, options), pacing=pacing)


def _plan_and_apply(
    run: Run, connection: Connection, saved: SavedPlan | None, options: ApplyOptions
) -> Applied:
    """Under the lock: plan against a fresh read of the record, check, ask, apply."""
    run.reread()
    if run.pending.id:  # an interrupted apply's journal: fold it in before anything else
        run.document = run.store.write(run.document, run.record.to_content(),
                                       folded=run.pending.id)  # fmt: skip
        run.store.journal().discard()
        run.pending = Pending(None, [])
    the_plan = make_run_plan(run, connection, only=options.only, verify=options.verify)
    if run.observed.duplicated or run.observed.unexplained:
        raise AnotherWriter(run.observed.duplicated, run.observed.unexplained, run.store.location)
    if saved is not None:
        saved.check(the_plan)
    if options.show is not None and the_plan.has_changes:
        options.show(the_plan)
    _check_destroy(the_plan, options.allow_destroy, options.max_destroy)
    if not the_plan.has_changes or (options.confirm is not None
                                    and not options.confirm(the_plan)):  # fmt: skip
        return Applied(the_plan, ApplyResult(), run.record)
    connection.backend.preflight(the_plan.roles())
    return _execute(run, connection, the_plan, options)


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


def _execute(run: Run, connection: Connection, the_plan: Plan, options: ApplyOptions) -> Applied:
    backend = connection.backend
    journal = run.store.journal()
    journal.start(run.document)
    built = RecordBuilder(run.record, writer=next_apply(run.record))
    recorded = 0
    building = threading.Lock()  # the executor's workers record changes at once

    def record_change(event: Event) -> None:
        nonlocal recorded
        with building:  # first: the record written at the end holds it in any case
            built.apply(event)
            recorded += 1
        journal.append(event_json(event))

    # Before the first write: what this apply sets out to write. Killed before recording
    # one of them, the next run knows whose a dataset it finds on the server is.
    writing = [c.target.key for c in the_plan.changes if isinstance(c.target, DatasetTarget)
               and c.action is not Action.DELETE]  # fmt: skip
    if writing:
        record_change(WritingDatasets(tuple(writing)))  # sorted in the journal
    progress = options.progress
    if progress is None and running_in_a_notebook():  # a bar in the cell's output
        from loader.notebook import NotebookProgress

        progress = NotebookProgress(the_plan.changes)
    executor = Executor(backend, record_change, run.datasets, run.setup.entities,
                        parallelism=options.threads, progress=progress)  # fmt: skip
    result = executor.run(the_plan)
    record = adopt_languages(built.build(), run.desired, run.observed)
    never_sent = {o.change.target.key for o in result.outcomes if o.status is OutcomeStatus.SKIPPED
                  and isinstance(o.change.target, DatasetTarget)}  # fmt: skip
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
        who=backend.acting_as(the_plan.roles()),
        commit=_git_commit(Path(run.path).absolute().parent),
        loader_version=loader_version(),
        plan_fingerprint=the_plan.origin.fingerprint,
        outcome=outcome,
        counts=result.counts(),
    )
    record = replace(record, history=(*record.history, entry),
                     target_url=recorded_url(run.target, run.store.location))  # fmt: skip
    try:
        run.document = run.store.write(run.document, record.to_content(), folded=journal.id)
    except StateError as error:
        raise UnrecordedChanges(result, recorded - journal.durable, error) from None
    # The record names this journal as folded: one left behind is recognised as such.
    with contextlib.suppress(StateError):
        journal.discard()
    return Applied(the_plan, result, record)


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
        key, mdids, more = _first(duplicated)
        parts.append(
            f"{len(duplicated)} identit{'y is' if len(duplicated) == 1 else 'ies are'} on the "
            f"server more than once ({key}: mdids {', '.join(map(str, sorted(mdids)))}{more}; "
            "only database access can remove all but one)"
        )
    if unexplained:
        key, mdid, more = _first(unexplained)
        parts.append(
            f"{plural(len(unexplained), 'dataset')} of the manifest "
            f"on the server that no apply of this record wrote ({key}: mdid {mdid}{more}; "
            "`import` takes over data loaded by other means)"
        )
    return (
        "another writer: " + "; ".join(parts) + f". If another apply uses a state record other "
        f"than {state}, give every apply of this target the same one"
    )


def _first(found: Mapping[DatasetKey, _Found]) -> tuple[DatasetKey, _Found, str]:
    """The first of `found` by key, to name it, and how many more there are."""
    key, value = min(found.items())
    return key, value, f", and {len(found) - 1} more" if len(found) > 1 else ""


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
            f"{error}: {plural(done, 'change')} reached the backend and "
            f"{where}; {counts['failed']} failed, {counts['skipped']} skipped. Apply again "
            "once the state record can be written"
        )
        self.result = result
        self.lost = lost


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
    with (
        connect(run, wait_ready=wait_ready, read_only=True) as connection,
        run.store.held(StateStore.holder(holder)),
    ):
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
