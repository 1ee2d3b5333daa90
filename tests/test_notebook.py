"""Plans, apply results and status in Jupyter: through IPython's display formatter, as
DataFrames, and the progress bar apply shows in a notebook."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.core.formatters import DisplayFormatter

import loader
from loader.execute import Outcome, OutcomeStatus
from loader.notebook import NotebookProgress, running_in_a_notebook
from tests.helpers import RESIDENTS_SAMPLE, write_manifest


class Table(HTMLParser):
    """The rows of an HTML table, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
        if tag in ("td", "th", "caption"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "caption"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "caption":
            self.caption += data
        elif self._in:
            self.rows[-1][-1] += data


def shown(value: object) -> Table:
    """What Jupyter would show of `value`: its HTML, from IPython's display formatter."""
    data, _ = DisplayFormatter().format(value)
    assert "text/html" in data, data.keys()
    table = Table()
    table.feed(data["text/html"])
    return table


FREE = "access:\n  read:free_data:\n    - indicator: residents.residents\n"


def test_a_plan_an_apply_and_a_status_show_as_tables_and_frames(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS_SAMPLE}, access=FREE)
    plan = loader.plan(manifest)
    table = shown(plan)
    assert table.caption.startswith("Plan: 9 to create")
    assert table.rows[0] == ["", "change", "details"]
    assert table.rows[1][:2] == ["+", "setup (the whole config, languages included): new "
                                 "(fresh deployment: 2 languages, 1 data provider, "
                                 "2 categories, 5 indicators, 2 spatial resolutions, "
                                 "2 temporal resolutions)"]  # fmt: skip
    frame = plan.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(plan.changes) == 9
    datasets = frame[frame["subject"] == "dataset"]
    assert sorted(datasets["dt"]) == ["2021-01-01 00:00:00"] * 3 + ["2021-02-01 00:00:00"] * 3
    grants = frame[frame["subject"] == "grant"]
    assert list(grants["scope"]) == ["read:free_data"] * 2
    assert set(grants["indicator_id"]) == {"residents.residents"}

    applied = loader.apply(manifest)
    assert (
        shown(applied).caption == ""
        and "done" in DisplayFormatter().format(applied)[0]["text/html"]
    )
    outcomes = applied.to_frame()
    assert list(outcomes.columns) == ["status", "action", "subject", "what", "message"]
    assert set(outcomes["status"]) == {"done"} and len(outcomes) == 9

    status = loader.status(manifest)
    table = shown(status)
    assert table.rows[0] == ["indicator and resolution", "coverage", "dates", "datasets", "gaps",
                             "grants"]  # fmt: skip
    row = next(r for r in table.rows if r[0].startswith("residents.residents "))
    assert row == ["residents.residents srid=2 (District) trid=2 (Month)", "██",
                   "2021-01..2021-02", "2", "none", "read:free_data 2"]  # fmt: skip
    frame = status.to_frame()
    assert set(frame["indicator_id"]) == {"residents.residents", "residents.residents_perKm2",
                                          "residents.arrived"}  # fmt: skip
    assert set(frame["spatial_label"]) == {"District"} and set(frame["datasets"]) == {2}


class Handle:
    """What IPython's display(..., display_id=True) gives back: updates are kept."""

    def __init__(self, shown: list[Any]) -> None:
        self.shown = shown

    def update(self, value: Any) -> None:
        self.shown.append(value)


def test_apply_in_a_notebook_shows_a_bar_that_ends_full(tmp_path: Path) -> None:
    assert not running_in_a_notebook()  # pytest is no kernel: the API shows nothing
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS_SAMPLE}, access=FREE)
    plan = loader.plan(manifest)
    drawn: list[Any] = []

    def show(value: Any, display_id: bool) -> Handle:
        assert display_id
        drawn.append(value)
        return Handle(drawn)

    bar = NotebookProgress(plan.changes, show=show)
    assert "0/9 changes (0%)" in drawn[0].data
    for change in plan.changes:
        bar(Outcome(change, OutcomeStatus.DONE))
    assert "<progress value='1.0000' max='1'" in drawn[-1].data
    assert "9/9 changes (100%" in drawn[-1].data
