"""What the Python API shows in Jupyter: plans, apply results and status as HTML tables
(their `_repr_html_`), as pandas DataFrames for analysts (`.to_frame()`), and a progress
bar while `loader.apply` runs in a notebook. The classes import this module only when a
notebook asks them to show themselves: a plan made on a terminal never loads it.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loader.model import plural

if TYPE_CHECKING:
    import pandas as pd

    from loader.applying import Applied
    from loader.execute import Outcome
    from loader.inventory import TargetStatus
    from loader.planner import Change, Plan

SYMBOL_COLOURS = {"+": "#2e7d32", "~": "#f9a825", "-": "#c62828"}  # as on a terminal


def running_in_a_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython is asked only if it is loaded)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    e = html.escape
    cells = "".join(f"<th style='text-align:left'>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in row)
                   + "</tr>" for row in rows)  # fmt: skip
    return f"<table><caption>{e(caption)}</caption><tr>{cells}</tr>{body}</table>"


def _symbol(symbol: str) -> str:
    return "".join(
        f"<b style='color:{SYMBOL_COLOURS[c]}'>{c}</b>" if c in SYMBOL_COLOURS else c
        for c in symbol
    )


# -- plans ------------------------------------------------------------------------------


def plan_html(plan: Plan) -> str:
    """The plan as its text shows it (many datasets of one indicator on one line), in a
    table: symbol, change and reason, details."""
    from loader.planfile import plan_data
    from loader.render import plan_lines, summary_text

    data = plan_data(plan)
    rows = [[_symbol(symbol), html.escape(text), "<br>".join(map(html.escape, details))]
            for symbol, text, details in plan_lines(data)]  # fmt: skip
    caption = summary_text(data).strip()
    if not rows:
        return f"<p>No changes: the target matches the manifest. {html.escape(caption)}</p>"
    return _table(["", "change", "details"], rows, caption)


def plan_frame(plan: Plan) -> pd.DataFrame:
    """One row per change: what, why, and the dataset or grant it touches."""
    import pandas as pd

    rows = []
    for change in plan.changes:
        key = getattr(change.target, "key", None)
        rows.append({
            "action": change.action.word,
            "subject": change.subject.value,
            "reason": change.reason.value,
            "what": change.describe(),
            "category_id": key.category_id if key else None,
            "indicator_id": key.indicator_id if key else None,
            "srid": key.srid if key else None,
            "trid": key.trid if key else None,
            "dt": key.dt if key else None,
            "scope": getattr(change.target, "scope", None),
        })  # fmt: skip
    columns = ["action", "subject", "reason", "what", "category_id", "indicator_id", "srid",
               "trid", "dt", "scope"]  # fmt: skip
    frame: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return frame


# -- apply results ----------------------------------------------------------------------


def applied_html(applied: Applied) -> str:
    counts = applied.result.counts()
    caption = (f"Apply: {counts['done']} done, {counts['failed']} failed, "
               f"{counts['skipped']} skipped")  # fmt: skip
    rows = [[html.escape(o.status.value), html.escape(o.change.describe()), html.escape(o.message)]
            for o in applied.result.outcomes if o.status.value != "done"]  # fmt: skip
    if not rows:
        return f"<p>{html.escape(caption)}.</p>"
    return _table(["outcome", "change", "why"], rows, caption)


def applied_frame(applied: Applied) -> pd.DataFrame:
    """One row per change carried out, failed or skipped."""
    import pandas as pd

    rows = [{"status": o.status.value, "action": o.change.action.word,
             "subject": o.change.subject.value, "what": o.change.describe(),
             "message": o.message} for o in applied.result.outcomes]  # fmt: skip
    frame: pd.DataFrame = pd.DataFrame(
        rows, columns=["status", "action", "subject", "what", "message"]
    )
    return frame


# -- status -----------------------------------------------------------------------------


def status_html(status: TargetStatus) -> str:
    """Per indicator and resolution: its coverage strip, dates, gaps and grants."""
    from loader.coverage import strip

    e = html.escape
    rows = [[e(status.name_of(s)),
             f"<code>{e(strip(s))}</code>", e(f"{s.dates[0]}..{s.dates[-1]}"),
             str(len(s.dates)), e(", ".join(s.gaps) or "none"),
             e(", ".join(f"{k} {n}" for k, n in sorted(s.scopes.items())) or "admin only")]
            for s in status.series]  # fmt: skip
    caption = f"Target {status.target}: {plural(len(status.series), 'series', 'series')}"
    return _table(["indicator and resolution", "coverage", "dates", "datasets", "gaps",
                   "grants"], rows, caption)  # fmt: skip


def status_frame(status: TargetStatus) -> pd.DataFrame:
    """One row per indicator and resolution: first and last date, datasets, gaps, values,
    what the last apply wrote, grants per scope."""
    import pandas as pd

    rows = [{"indicator_id": s.indicator_id, "srid": s.srid,
             "spatial_label": status.labels.label_of("spatial", s.srid), "trid": s.trid,
             "temporal_label": status.labels.label_of("temporal", s.trid),
             "first": s.dates[0], "last": s.dates[-1], "datasets": len(s.dates),
             "gaps": len(s.gaps), "values": s.values, "changed_by_last_apply": len(s.changed),
             "grants": dict(s.scopes)} for s in status.series]  # fmt: skip
    columns = ["indicator_id", "srid", "spatial_label", "trid", "temporal_label", "first",
               "last", "datasets", "gaps", "values", "changed_by_last_apply", "grants"]  # fmt: skip
    frame: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return frame


# -- progress ---------------------------------------------------------------------------


class NotebookProgress:
    """A progress bar in the cell's output that apply updates as its changes complete:
    the share of the work done and the time left, weighted as on a terminal
    (loader/progress.py). `show` is IPython's display (a handle with `update` back)."""

    EVERY = 0.25  # seconds between two redraws at most

    def __init__(self, changes: Sequence[Change],
                 show: Callable[..., Any] | None = None) -> None:  # fmt: skip
        from loader.progress import Tally

        if show is None:
            from IPython.display import display

            show = display
        self.tally = Tally(changes, time.monotonic)
        self.last = self.tally.start
        self.lock = threading.Lock()  # apply's workers report at once
        self.handle = show(self._html(), display_id=True)  # type: ignore[no-untyped-call]

    def _html(self) -> Any:
        from IPython.display import HTML

        tally = self.tally
        share, left = (tally.model.share_done(), tally.model.seconds_left()) if tally.done \
            else (0.0, None)  # fmt: skip
        eta = "" if left is None else f", about {left:.0f} s left"
        failed = f", {tally.failed} failed" if tally.failed else ""
        text = f"{tally.done}/{tally.total} changes{failed} ({share:.0%}{eta})"
        bar = (f"<progress value='{share:.4f}' max='1' style='width:30em'></progress> "
               f"<span>{html.escape(text)}</span>")  # fmt: skip
        return HTML(bar)  # type: ignore[no-untyped-call]

    def __call__(self, outcome: Outcome) -> None:
        with self.lock:
            if self.tally.count(outcome) is None:
                return  # never started
            now = time.monotonic()
            if now - self.last >= self.EVERY or self.tally.done == self.tally.total:
                self.last = now
                self.handle.update(self._html())
