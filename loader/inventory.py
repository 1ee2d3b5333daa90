"""`status`: what the target holds as its state record knows it, per indicator and
resolution (dates loaded, gaps between them, values, grants), checked against the mdids
the server shows (datasets gone from it are counted as vanished).

Nothing here prints: the CLI renders a TargetStatus (loader/render.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loader.applying import another_writer_message
from loader.model import ResolutionLabels
from loader.notes import Note
from loader.record import ApplyEntry, groups
from loader.refresh import Grids
from loader.run import actual_state, connect, open_run
from loader.timegrid import from_backend_dt


@dataclass
class SeriesStatus:
    """One indicator at one resolution: what is loaded."""

    indicator_id: str
    srid: int
    trid: int
    dates: list[str]  # in the resolution's format, loaded
    gaps: list[str]  # steps between the first and last date with nothing loaded
    values: int
    scopes: dict[str, int]  # datasets granted per scope, as recorded
    vanished: int  # recorded datasets the server no longer shows
    changed: list[str] = field(default_factory=list)  # dates the last apply wrote
    # per scope whose reader looked (credentials.scopes, or a local target): datasets seen
    verified: dict[str, int] = field(default_factory=dict)


@dataclass
class TargetStatus:
    target: str
    url: str
    state: str
    series: list[SeriesStatus]
    entities: int
    last_apply: ApplyEntry | None
    refreshed: bool
    pending: int  # journal entries of an interrupted apply
    notes: tuple[Note, ...] = ()
    another_writer: str = ""  # what another writer left on the server, and what to do
    labels: ResolutionLabels = field(default_factory=ResolutionLabels)  # `srid=2 (District)`
    history: tuple[ApplyEntry, ...] = ()  # every apply, the last one last

    def name_of(self, series: SeriesStatus) -> str:
        """`residents.residents srid=2 (District) trid=2 (Month)`."""
        return f"{series.indicator_id} {self.labels.series(series.srid, series.trid)}"

    # In a notebook (loader/notebook.py, imported only there).
    def _repr_html_(self) -> str:
        from loader.notebook import status_html

        return status_html(self)

    def to_frame(self) -> Any:
        """A pandas DataFrame: one row per indicator and resolution."""
        from loader.notebook import status_frame

        return status_frame(self)


def status(
    manifest: str | Path,
    *,
    target: str | None = None,
    state: str | None = None,
    offline: bool = False,
    wait_ready: float = 0,
    environ: Mapping[str, str] | None = None,
) -> TargetStatus:
    """What the target holds as the record knows it, checked against the server's mdids."""
    run = open_run(manifest, target=target, state=state, environ=environ)
    if offline:
        actual = actual_state(run, None)
    else:
        with connect(run, wait_ready=wait_ready, read_only=True) as connection:
            actual = actual_state(run, connection)
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
        observed = actual.observed
        missing, looked = observed.grants_missing, observed.scopes_checked
        verified = {scope: count - sum(1 for k in keys if (scope, k) in missing)
                    for scope, count in scopes.items() if scope in looked}  # fmt: skip
        last = len(run.record.history)
        changed = [date for key, date in zip(keys, shown, strict=True)
                   if last and run.record.datasets[key].written == last]  # fmt: skip
        series.append(SeriesStatus(
            indicator, srid, trid, shown, gaps,
            sum(run.record.datasets[k].summary.stats.count for k in keys), scopes,
            sum(1 for k in keys if k in observed.vanished), changed, verified,
        ))  # fmt: skip
    return TargetStatus(
        run.target.name, run.target.url, run.store.location, series, len(run.record.entities),
        run.record.history[-1] if run.record.history else None, actual.observed.refreshed,
        len(run.pending.entries), actual.observed.notes,
        another_writer_message(actual.observed.duplicated, actual.observed.unexplained,
                               run.store.location)
        if actual.observed.duplicated or actual.observed.unexplained else "",
        run.setup.labels, run.record.history,
    )  # fmt: skip
