"""One run of the loader against one target: the manifest read with its data summarised,
the state record with any leftover journal folded in, and the connection to the backend;
and the plan made from them (`loader.plan`).

apply and import (loader/applying.py), status (loader/inventory.py) and check all start
here, so that they read a manifest, a record and a server the same way. Nothing in this
module prints: callers get values, or a LoaderError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from loader.backends.factory import Opening, open_backend
from loader.backends.pacing import AdaptiveLimit
from loader.contract import SEES_EVERYTHING
from loader.manifest import display_path
from loader.model import (
    Backend,
    Dataset,
    DatasetKey,
    Identity,
    LoaderError,
    Manifest,
    Role,
    SetupConfig,
    Target,
    excerpt,
)
from loader.planfile import fingerprint
from loader.planner import Origin, Plan, Selector, make_plan
from loader.record import Actual, Desired, Observed, Record, replay
from loader.refresh import desired_state, refresh
from loader.state import Document, Pending, StateStore
from loader.validation import ValidationReport, validate


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
        from loader.data import read_datasets  # pandas: only when data is read

        holding = {(f.spec_index, f.file) for f in self.report.files
                   if any(s.key in keys for s in f.summaries)}  # fmt: skip
        for spec in self.manifest.datasets:
            for file in spec.files:
                if (spec.index, file) in holding:
                    found, _ = read_datasets(spec, file, self.setup, display_path(file))
                    yield from (d for d in found if d.key in keys)

    def reread(self) -> None:
        """The record again (after taking the lock, someone may have written it)."""
        self.document, self.record, self.pending = read_record(self.store)

    def scopes(self) -> set[str]:
        """Every scope whose grants a refresh looks at: recorded or desired."""
        found = {s for d in self.record.datasets.values() for s in d.scopes}
        return found | {s for v in self.desired.scopes.values() for s in v}


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


def unset_variables(text: str) -> list[str]:
    """The `${VAR}`s left in `text` because the environment does not set them."""
    return sorted(set(re.findall(r"\$\{(\w+)", text)))


def other_target_message(location: str, recorded: str | None, url: str) -> str:
    """Why a record is not this target's (open_run refuses it; check reports it)."""
    return (
        f"{location}: this state record was applied to {excerpt(recorded)}, not {url}: give "
        "each target its own state (if it is the same backend at a new address, set "
        "target_url in the record)"
    )


def is_targets_record(record: Record, target: Target, location: str) -> bool:
    return record.target_url in (None, target.url, recorded_url(target, location))


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
    if chosen.url.startswith(("http://", "https://")):
        refuse_guessed_ids(Path(path))
    unset = unset_variables(f"{chosen.url} {state or chosen.state}")
    if unset:
        raise LoaderError(
            f"target {chosen.name}: {', '.join(unset)} not set in the environment (its url "
            "or state needs it)"
        )
    store = StateStore(state or chosen.state)
    document, record, pending = read_record(store)
    if not is_targets_record(record, chosen, store.location):
        raise LoaderError(other_target_message(store.location, record.target_url, chosen.url))
    return Run(str(path), manifest, chosen, manifest.setup(chosen.name), report, store,
               document, record, pending, env)  # fmt: skip


def refuse_guessed_ids(path: Path) -> None:
    """A remote target is refused while `init`'s guessed ids are still marked: a wrong
    srid or trid loads every dataset again under another id (hazard 1)."""
    from loader.draft import confirm_markers

    marked = confirm_markers(path.read_text(encoding="utf-8-sig"))
    if marked:
        line, column, name = marked[0]
        more = f" (and {len(marked) - 1} more)" if len(marked) > 1 else ""
        raise LoaderError(
            f"{display_path(path)}:{line}:{column}: ids.{name} is marked `# confirm`{more}: "
            "init took it from the config's order; check it against the server and remove "
            "the marker (a wrong id loads every dataset again under another)"
        )


# ---------------------------------------------------------------------------------------
# The backend


@dataclass
class Connection:
    """The target's backend, and one reader per scope that can check grants (the
    backend's own: closing it closes them)."""

    backend: Backend
    readers: dict[str, Backend]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(
    run: Run,
    *,
    wait_ready: float = 0,
    parallelism: int = 8,
    pacing: AdaptiveLimit | None = None,
    read_only: bool = False,
) -> Connection:
    opening = Opening(environ=run.environ, parallelism=parallelism, pacing=pacing,
                      read_only=read_only)  # fmt: skip
    backend = open_backend(run.target, run.setup, opening)
    try:
        if wait_ready > 0:  # otherwise the first real request tells
            backend.wait_ready(wait_ready)
        check_reader_sees_everything(backend.identities([Role.READER]).get(Role.READER))
        readers = {s: r for s in sorted(run.scopes()) if (r := backend.reader(s)) is not None}
    except BaseException:
        backend.close()
        raise
    return Connection(backend, readers)


def check_reader_sees_everything(reader: Identity | LoaderError | None) -> None:
    """A refresh reads with the reader role: a token that cannot see every dataset (the
    automatic `admin` mapping) would make the loader take what it cannot see for gone.
    `reader` is the role's identity (None: the backend has no credentials to check)."""
    if isinstance(reader, LoaderError):
        raise reader
    if reader is not None and SEES_EVERYTHING not in reader.permissions:
        seen = ", ".join(sorted(reader.permissions)) or "none"
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


# ---------------------------------------------------------------------------------------
# Plan


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
    made = make_plan(run.desired, actual, selectors)
    digest = fingerprint(Path(run.path), run.target, run.desired, actual, made, verify=verify)
    origin = Origin(run.target.name, run.target.url, display_path(run.path),
                    str(Path(run.path).absolute()), verify, digest, run.setup.labels)  # fmt: skip
    return made.made_from(origin)


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
    with connect(run, wait_ready=wait_ready, read_only=True) as connection:
        return make_run_plan(run, connection, only=only, verify=verify)
