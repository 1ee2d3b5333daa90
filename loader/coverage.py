"""What a target holds, as pictures: the coverage strip `status` prints per indicator, the
document `status --format json` gives (schemas/status.schema.json), and the
self-contained HTML report of `status --format html` (a heatmap of indicators by date:
loaded, a gap, written by the last apply; per range the scopes that see it, recorded or
verified by a reader; the apply history).

Sizes are bounded whatever the deployment: a strip has at most STRIP_CELLS cells and a
heatmap row at most HEATMAP_CELLS, each cell standing for as many consecutive steps as it
takes (a cell of three years of daily data holds five days), so that 50,000 datasets
give a report under a megabyte (tests/test_coverage.py).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loader.model import plural
from loader.record import entry_json

if TYPE_CHECKING:
    from loader.inventory import SeriesStatus, TargetStatus

STATUS_FORMAT_VERSION = 1
STRIP_CELLS = 60
HEATMAP_CELLS = 240

LOADED, PARTLY, GAP, CHANGED = "loaded", "partly", "gap", "changed"
GLYPHS = {LOADED: "█", CHANGED: "█", PARTLY: "▒", GAP: "·"}
ASCII_GLYPHS = {LOADED: "#", CHANGED: "#", PARTLY: "+", GAP: "."}
# The heatmap's colours (a browser test reads them back at known cells).
COLOURS = {LOADED: "#2e7d32", CHANGED: "#1565c0", PARTLY: "#a5d6a7", GAP: "#e0e0e0"}


@dataclass(frozen=True)
class Cell:
    """A run of consecutive steps of one series, shown as one cell."""

    first: str
    last: str
    state: str  # LOADED, PARTLY, GAP or CHANGED (all loaded, some by the last apply)
    loaded: int
    steps: int


def steps_of(series: SeriesStatus) -> list[str]:
    """Every step from the first date loaded to the last, in order."""
    return sorted({*series.dates, *series.gaps})


def cells(series: SeriesStatus, most: int) -> list[Cell]:
    """The series' steps in at most `most` cells of equal runs (the last may be shorter)."""
    steps = steps_of(series)
    loaded, changed = set(series.dates), set(series.changed)
    size = max(1, -(-len(steps) // most))  # ceiling: never more than `most` cells
    found = []
    for start in range(0, len(steps), size):
        run = steps[start : start + size]
        have = sum(1 for step in run if step in loaded)
        if have == 0:
            state = GAP
        elif have < len(run):
            state = PARTLY
        elif any(step in changed for step in run):
            state = CHANGED
        else:
            state = LOADED
        found.append(Cell(run[0], run[-1], state, have, len(run)))
    return found


def strip(series: SeriesStatus, *, unicode: bool = True) -> str:
    """The series' coverage in one line of at most STRIP_CELLS characters."""
    glyphs = GLYPHS if unicode else ASCII_GLYPHS
    return "".join(glyphs[cell.state] for cell in cells(series, STRIP_CELLS))


# ---------------------------------------------------------------------------------------
# status --format json


def status_data(status: TargetStatus) -> dict[str, Any]:
    """The document `status --format json` prints (schemas/status.schema.json)."""
    last = status.last_apply
    return {
        "format_version": STATUS_FORMAT_VERSION,
        "target": status.target,
        "url": status.url,
        "state": status.state,
        "refreshed": status.refreshed,
        "pending": status.pending,
        "another_writer": status.another_writer or None,
        "entities": status.entities,
        "series": [_series_data(s, status) for s in status.series],
        "history": [entry_json(entry) for entry in status.history],
        "last_apply": None if last is None else entry_json(last),
    }


def _series_data(series: SeriesStatus, status: TargetStatus) -> dict[str, Any]:
    labels = status.labels
    return {
        "indicator_id": series.indicator_id,
        "srid": series.srid,
        "spatial_label": labels.label_of("spatial", series.srid),
        "trid": series.trid,
        "temporal_label": labels.label_of("temporal", series.trid),
        "dates": list(series.dates),
        "gaps": list(series.gaps),
        "changed_by_last_apply": list(series.changed),
        "values": series.values,
        "scopes": [
            {"scope": scope, "recorded": count, "verified": series.verified.get(scope)}
            for scope, count in sorted(series.scopes.items())
        ],
        "vanished": series.vanished,
    }


def render_status_json(status: TargetStatus) -> str:
    from loader.render import render_json

    return render_json(status_data(status))


# ---------------------------------------------------------------------------------------
# status --format html

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #212121; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table.heatmap { border-collapse: separate; border-spacing: 1px; }
table.heatmap th { text-align: left; font-weight: normal; padding-right: 1em;
  white-space: nowrap; }
table.heatmap td.cell { width: 6px; height: 18px; padding: 0; }
table.list { border-collapse: collapse; } table.list td, table.list th {
  border-bottom: 1px solid #e0e0e0; padding: 2px 1em 2px 0; text-align: left; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px;
  vertical-align: middle; }
""" + "".join(
    f"td.{state}, .legend span.{state} {{ background: {colour}; }}\n"
    for state, colour in COLOURS.items()
)


def render_status_html(status: TargetStatus) -> str:
    """One self-contained page: no script, no link, no font or image to fetch."""
    e = html.escape
    how = "checked against the server" if status.refreshed else "from the state record only"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>flowkit-loader status: {e(status.target)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Target {e(status.target)}</h1>",
        f"<p>{e(status.url)}; state {e(status.state)}; {e(how)}.</p>",
    ]
    if status.pending:
        out.append(f"<p>An interrupted apply left {e(plural(status.pending, 'change'))} in "
                   "the journal: the next apply folds them in.</p>")  # fmt: skip
    if status.another_writer:
        out.append(f"<p>{e(status.another_writer)}</p>")
    out.append("<h2>Coverage</h2>")
    if not status.series:
        out.append("<p>Nothing loaded by flowkit-loader yet.</p>")
    else:
        out.append('<p class="legend">' + "".join(
            f'<span class="{state}"></span>{e(name)}'
            for state, name in ((LOADED, "loaded"), (CHANGED, "written by the last apply"),
                                (PARTLY, "partly loaded"), (GAP, "gap"))
        ) + "</p>")  # fmt: skip
        out.append('<table class="heatmap">')
        for index, series in enumerate(status.series):
            out.append(_heatmap_row(series, status, index))
        out.append("</table>")
        out += _scopes_table(status.series, status)
    out += _history_table(status.history)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _heatmap_row(series: SeriesStatus, status: TargetStatus, index: int) -> str:
    e = html.escape
    name = status.name_of(series)
    dates = f"{series.dates[0]}..{series.dates[-1]}, {plural(len(series.dates), 'dataset')}"
    row = [f'<tr id="series-{index}"><th>{e(name)}<br><small>{e(dates)}</small></th>']
    for cell in cells(series, HEATMAP_CELLS):
        span = cell.first if cell.first == cell.last else f"{cell.first}..{cell.last}"
        title = f"{span}: {cell.loaded} of {cell.steps} loaded"
        if cell.state == CHANGED:
            title += ", written by the last apply"
        row.append(f'<td class="cell {cell.state}" title="{e(title)}"></td>')
    return "".join(row) + "</tr>"


def _scopes_table(series_list: Sequence[SeriesStatus], status: TargetStatus) -> list[str]:
    e = html.escape
    out = ["<h2>Who sees what</h2>", '<table class="list"><tr><th>indicator and resolution'
           "</th><th>dates</th><th>scope</th><th>datasets granted</th><th>seen by the scope's "
           "reader</th></tr>"]  # fmt: skip
    for series in series_list:
        span = f"{series.dates[0]}..{series.dates[-1]}"
        rows = sorted(series.scopes.items()) or [("admin only", 0)]
        for scope, count in rows:
            seen = series.verified.get(scope)
            checked = "not checked (no reader credential)" if seen is None else f"{seen} (verified)"
            out.append(f"<tr><td>{e(status.name_of(series))}</td><td>{e(span)}</td>"
                       f"<td>{e(scope)}</td><td>{count} (recorded)</td>"
                       f"<td>{e(checked) if count else ''}</td></tr>")  # fmt: skip
    out.append("</table>")
    return out


def _history_table(history: Sequence[Any]) -> list[str]:
    e = html.escape
    out = ["<h2>Applies</h2>"]
    if not history:
        return [*out, "<p>Never applied.</p>"]
    out.append('<table class="list"><tr><th>when</th><th>by</th><th>outcome</th>'
               "<th>changes</th><th>commit</th><th>loader</th></tr>")  # fmt: skip
    for entry in reversed(history):  # the newest first
        counts = ", ".join(f"{n} {what}" for what, n in sorted(entry.counts.items()))
        commit = (entry.commit or "")[:12]
        out.append(f"<tr><td>{e(entry.when)}</td><td>{e(entry.who)}</td>"
                   f"<td>{e(entry.outcome)}</td><td>{e(counts)}</td>"
                   f"<td>{e(commit)}</td><td>{e(entry.loader_version)}</td></tr>")  # fmt: skip
    out.append("</table>")
    return out
