"""Plans and apply results -> text for terminals, Markdown for pull requests, versioned
JSON for machines. Strings only: the CLI prints them.

Every format is drawn from the plan's JSON form (`planfile.plan_data`), so that a saved
plan (`show plan.json`) renders exactly as the plan did when it was made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from itertools import groupby, pairwise
from typing import TYPE_CHECKING, Any

from loader.model import ResolutionLabels, plural
from loader.notes import (
    ConfigLeftOut,
    Duplicated,
    GrantsDroppedByUpdate,
    GrantsUnchecked,
    KeptInUse,
    NoSuchResolution,
    Note,
    NotRefreshed,
    Unexplained,
    Unrecorded,
)
from loader.planner import Action

if TYPE_CHECKING:  # render only reads them: no import of the commands' modules
    from loader.execute import ApplyResult
    from loader.inventory import TargetStatus
    from loader.model import Problem
    from loader.refresh import ImportReport
    from loader.validation import ValidationReport

GITHUB_COMMENT_LIMIT = 65_536
COLLAPSE_AFTER = 3  # more datasets than this of one indicator and action: one line
SKIPPED_LISTED = 5  # more changes than this skipped for one reason: counted, not listed


def note_text(note: Note) -> str:
    """A note in words: plans (their JSON form and so every format) and status."""
    match note:
        case NotRefreshed():
            return "not refreshed: planned against the state record alone (--offline)"
        case ConfigLeftOut(count):
            return f"{count} config change(s) left out by --only"
        case KeptInUse(kind, name):
            kept = "is removed from the manifest but kept: datasets still use it"
            return f"{kind.singular} {name} {kept}"
        case GrantsDroppedByUpdate(key, scopes):
            return (
                f"{key}: the update drops its grant(s) to {', '.join(scopes)} (no longer in "
                "the access rules)"
            )
        case GrantsUnchecked(scopes):
            return (
                "grants cannot be listed and an admin token sees every dataset: a grant "
                f"removed behind the loader's back would not show for {', '.join(scopes)} "
                "(configure a reader credential per scope under credentials.scopes to check)"
            )
        case Duplicated(count, key, mdids):
            return (
                f"another writer: {count} identit{'y is' if count == 1 else 'ies are'} on "
                f"the server more than once ({key}: mdids {', '.join(map(str, mdids))}); "
                "apply refuses until they are removed"
            )
        case Unexplained(count, key, mdid):
            return (
                f"another writer: {count} dataset(s) of the manifest on the server that no "
                f"apply of this record wrote ({key}: mdid {mdid}); apply refuses (`import` "
                "takes over data loaded by other means)"
            )
        case Unrecorded(indicator, srid, trid, count):
            return (
                f"{count} dataset(s) of {indicator} srid={srid} trid={trid} on the server "
                "are not in the state record (loaded by other means; `import` takes them "
                "over; never deleted by the loader)"
            )
        case NoSuchResolution(indicator, trid):
            return (
                f"{indicator} trid={trid}: no such temporal resolution in the config; its "
                "datasets were not checked"
            )


def render_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------
# Lines: what text and Markdown share


def _identity(key: Mapping[str, Any]) -> str:
    return f"{key['indicator_id']} srid={key['srid']} trid={key['trid']}"


def _stats_line(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    parts = []
    for name in ("count", "sum", "min", "max"):
        old, new = before["stats"][name], after["stats"][name]
        parts.append(f"{name} {old}" if old == new else f"{name} {old} -> {new}")
    return ", ".join(parts)


def _key_order(key: Any) -> Any:
    """A change's dataset key as a value to group by (None for setup and entities)."""
    if not isinstance(key, Mapping):
        return key
    return tuple(key.get(name) for name in ("category_id", "indicator_id", "srid", "trid", "dt"))


def _blocks(changes: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Dataset and grant changes per dataset identity, in plan order."""
    blocks: list[list[Mapping[str, Any]]] = []
    for _, run in groupby(changes, key=lambda c: _key_order(c.get("key"))):
        blocks.append(list(run))
    return blocks


def _block_kind(block: list[Mapping[str, Any]]) -> tuple[str, ...]:
    head = block[0]
    key = head["key"]
    grants = tuple(sorted((c["symbol"], c["reason"]) for c in block if c["subject"] == "grant"))
    shape = (head["subject"], head["symbol"], head["reason"])
    return (_identity(key), *shape, *(f"{s}{r}" for s, r in set(grants)))


def plan_lines(data: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(symbol, text, detail lines) for every change, many datasets of one indicator with
    the same action and reason folded into one line with their date range."""
    changes = data["changes"]
    config = [c for c in changes if c["subject"] in ("setup", "entity")]
    rest = [c for c in changes if c["subject"] not in ("setup", "entity")]
    lines: list[tuple[str, str, list[str]]] = []
    for change in config:
        if change["action"] != "delete":
            lines.append(_single(change))
    for _, run in groupby(_blocks(rest), key=_block_kind):
        blocks = list(run)
        if len(blocks) > COLLAPSE_AFTER:
            lines.append(_collapsed(blocks))
        else:
            lines += [line for block in blocks for line in _block_lines(block)]
    for change in config:
        if change["action"] == "delete":
            lines.append(_single(change))
    labels = ResolutionLabels.from_json(data.get("labels"))
    return [(symbol, labelled(text, labels), [labelled(d, labels) for d in details])
            for symbol, text, details in lines]  # fmt: skip


_SERIES = re.compile(r"\bsrid=(\d+) trid=(\d+)\b")


def labelled(text: str, labels: ResolutionLabels) -> str:
    """`srid=2 trid=4` in `text` with the resolutions' labels beside the ids."""
    return _SERIES.sub(lambda found: labels.series(int(found[1]), int(found[2])), text)


def _single(change: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    text = f"{change['what']}: {change['reason']}"
    if change["detail"]:
        text += f" ({change['detail']})"
    if change["destructive"]:
        text += " [destructive]"
    return (change["symbol"], text, [])


def _block_lines(block: list[Mapping[str, Any]]) -> list[tuple[str, str, list[str]]]:
    head = block[0]
    if head["subject"] == "grant":
        return [_single(c) for c in block]
    symbol, text, details = _single(head)
    if "before" in head and "dataset" in head:
        details.append(_stats_line(head["before"], head["dataset"]))
    for grant in block[1:]:
        details.append(f"{grant['symbol']} grant {grant['scope']} ({grant['reason']})")
    return [(symbol, text, details)]


def _pooled(datasets: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Many datasets' statistics as one: counts and sums added, the extremes kept."""
    stats = [d["stats"] for d in datasets]
    return {"stats": {
        "count": sum(int(x["count"]) for x in stats),
        "sum": _decimal_text(sum((Decimal(x["sum"]) for x in stats), Decimal(0))),
        "min": _decimal_text(min(Decimal(x["min"]) for x in stats)),
        "max": _decimal_text(max(Decimal(x["max"]) for x in stats)),
    }}  # fmt: skip


def _decimal_text(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _collapsed(blocks: list[list[Mapping[str, Any]]]) -> tuple[str, str, list[str]]:
    head = blocks[0][0]
    dates = sorted(b[0]["key"]["dt"][:10] for b in blocks)
    noun = "dataset" if head["subject"] == "dataset" else "grant"
    heads = [b[0] for b in blocks]
    text = (
        f"{noun}s of {_identity(head['key'])}: {dates[0]}..{dates[-1]}, "
        f"{plural(len(blocks), noun)}: {head['reason']}"
    )
    if head["destructive"]:
        text += " [destructive]"
    details = []
    if noun == "dataset":
        if all("before" in c and "dataset" in c for c in heads):  # updates: old and new, summed
            details.append(_stats_line(_pooled([c["before"] for c in heads]),
                                       _pooled([c["dataset"] for c in heads])))  # fmt: skip
        else:
            values = sum(int(c.get("dataset", {}).get("stats", {}).get("count", 0)) for c in heads)
            details.append(f"{plural(values, 'value')}")
        scopes: dict[tuple[str, str, str], int] = {}
        for block in blocks:
            for grant in block[1:]:
                name = (grant["symbol"], grant["scope"], grant["reason"])
                scopes[name] = scopes.get(name, 0) + 1
        for (symbol, scope, reason), count in sorted(scopes.items()):
            details.append(f"{symbol} grant {scope} x{count} ({reason})")
    return (head["symbol"], text, details)


def _summary_line(data: Mapping[str, Any]) -> str:
    s = data["summary"]
    counts = f"{s['create']} to create, {s['update']} to update, {s['delete']} to delete" + (
        f", {s['replace']} to replace" if s["replace"] else ""
    )
    if s["destructive"]:
        counts += f" ({s['destructive']} destructive)"
    unchanged = data["unchanged"]
    kept = (
        f"unchanged: {plural(unchanged.get('entity', 0), 'config entity', 'config entities')}, "
        f"{plural(unchanged.get('dataset', 0), 'dataset')}, "
        f"{plural(unchanged.get('grant', 0), 'grant')}"
    )
    return f"{counts}; {kept}"


def _header(data: Mapping[str, Any]) -> str:
    how = "refreshed against the server" if data["refreshed"] else "NOT refreshed (offline)"
    only = f", only {' and '.join(data['only'])}" if data["only"] else ""
    return f"Plan for {data['manifest']} on target {data['target']} ({how}{only})"


# ---------------------------------------------------------------------------------------
# Text and Markdown


SYMBOLS = frozenset(action.value for action in Action)  # what `paint` is given


def _as_is(symbol: str) -> str:
    return symbol


def render_text(data: Mapping[str, Any], paint: Callable[[str], str] = _as_is) -> str:
    """The plan for a terminal or a log; `paint` colours each change's symbol (`+`, `~`,
    `-`, `-/+`, the grants' too) where the reader's terminal shows colour."""
    out = [_header(data)]
    lines = plan_lines(data)
    if not lines:
        out.append("No changes: the target matches the manifest.")
    for symbol, text, details in lines:
        out.append(f"  {paint(symbol)}{' ' * (4 - len(symbol))}{text}")
        for detail in details:
            first, _, rest = detail.partition(" ")
            painted = f"{paint(first)} {rest}" if first in SYMBOLS and rest else detail
            out.append(f"        {painted}")
    for note in data["notes"]:
        out.append(f"note: {note}")
    out.append(f"Plan: {_summary_line(data)}")
    if data["changes"]:
        out.append(f"Roles needed: {', '.join(data['roles'])}")
    return "\n".join(out) + "\n"


def summary_text(data: Mapping[str, Any]) -> str:
    """The plan's one summary line (`plan -q`)."""
    return f"Plan: {_summary_line(data)}\n"


MERMAID_TASKS = 40  # more bars than this: folded into one row per category and action
MERMAID_TAGS = {"create": "", "update": "active, ", "delete": "crit, ", "replace": "crit, "}


def _runs(dates: list[date]) -> list[tuple[date, date]]:
    """Sorted dates as runs of consecutive steps, each (first, the day after its last
    step): the step is the smallest spacing seen, and a spacing of more than half as much
    again ends a run (a month is 28 to 31 days)."""
    spacing = min((b - a for a, b in pairwise(dates)), default=timedelta(days=1))
    runs: list[tuple[date, date]] = []
    first = previous = dates[0]
    for day in dates[1:]:
        if day - previous > spacing * 1.5:
            runs.append((first, previous + spacing))
            first = day
        previous = day
    return [*runs, (first, previous + spacing)]


def mermaid_chart(data: Mapping[str, Any]) -> list[str]:
    """A Mermaid gantt chart of the date ranges the plan creates, updates and deletes, a
    section per category (GitHub draws it in a comment by itself); [] with no dataset
    changes. Past MERMAID_TASKS bars, a category's indicators are folded into one row per
    action."""
    labels = ResolutionLabels.from_json(data.get("labels"))
    series: dict[tuple[str, str, str], list[date]] = {}
    folded: dict[tuple[str, str, str], list[date]] = {}
    for change in data["changes"]:
        if change["subject"] != "dataset":
            continue
        key, action = change["key"], change["action"]
        day = date.fromisoformat(key["dt"][:10])
        name = f"{key['indicator_id']} {labels.series(key['srid'], key['trid'])}"
        series.setdefault((key["category_id"], action, name), []).append(day)
        folded.setdefault((key["category_id"], action, "all indicators"), []).append(day)
    if not series:
        return []
    bars = {k: _runs(sorted(set(v))) for k, v in series.items()}
    if sum(len(runs) for runs in bars.values()) > MERMAID_TASKS:
        bars = {k: _runs(sorted(set(v))) for k, v in folded.items()}
    lines = ["```mermaid", "gantt", "    title Date ranges this plan writes or deletes",
             "    dateFormat YYYY-MM-DD", "    axisFormat %Y-%m-%d"]  # fmt: skip
    section = None
    for (category, action, name), runs in sorted(bars.items()):
        if category != section:
            section = category
            lines.append(f"    section {_mermaid_text(category)}")
        for first, end in runs:
            lines.append(f"    {action} {_mermaid_text(name)} :{MERMAID_TAGS[action]}"
                         f"{first.isoformat()}, {end.isoformat()}")  # fmt: skip
    return [*lines, "```"]


def _mermaid_text(text: str) -> str:
    """A task or section name Mermaid reads as one: no colon, semicolon or hash."""
    return text.replace(":", " ").replace(";", " ").replace("#", " ")


def render_markdown(data: Mapping[str, Any], limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """A pull-request comment: summary table, details folded, within GitHub's limit."""
    s = data["summary"]
    head = [
        f"### {_header(data)}",
        "",
        f"**{_summary_line(data)}**",
        "",
        "| action | count |",
        "|---|---:|",
        *(
            f"| `{sym}` {word} | {s[word]} |"
            for sym, word in (("+", "create"), ("~", "update"), ("-", "delete"), ("-/+", "replace"))
        ),
        f"| destructive | {s['destructive']} |",
        "",
    ]
    if data["changes"]:
        head += [f"Roles needed: {', '.join(data['roles'])}", ""]
    # Notes get at most a quarter of the comment; the changes, the rest.
    notes: list[str] = []
    room = limit // 4
    for note in data["notes"]:
        line = f"> **Note:** {note}"
        if room - len(line) < 0:
            notes.append(f"> **Note:** ... and {len(data['notes']) - len(notes):,} more notes "
                         "(`flowkit-loader show plan.json` prints them all)")  # fmt: skip
            break
        notes.append(line)
        room -= len(line) + 1
    head += [*notes, ""] if notes else []
    chart = mermaid_chart(data)
    if chart and len("\n".join(chart)) < limit // 4:  # folded, it fits; if not, it is left out
        head += [*chart, ""]
    body = []
    for symbol, text, details in plan_lines(data):
        body.append(f"{symbol} {text}")
        body += [f"    {d}" for d in details]
    if not body:
        return "\n".join([*head, "No changes: the target matches the manifest.", ""])
    opening = [f"<details><summary>{plural(len(body), 'line')} of changes</summary>", "",
               "```diff"]  # fmt: skip
    closing = ["```", "", "</details>", ""]
    fixed = len("\n".join(head + opening + closing)) + 400  # room for the truncation note
    kept: list[str] = []
    size = fixed
    for line in body:
        size += len(line) + 1
        if size > limit:
            break
        kept.append(line.replace("```", "'''"))
    text = "\n".join([*head, *opening, *kept, *closing])
    if len(kept) < len(body):
        text += (
            f"\n**Truncated:** {len(body) - len(kept):,} of {len(body):,} lines are not shown "
            "(GitHub comments hold 65,536 characters); `flowkit-loader show plan.json` "
            "prints them all.\n"
        )
    return text


# A plan's formats by name: `plan`'s and `show`'s `--format` choices.
PLAN_FORMATS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "text": render_text,
    "markdown": render_markdown,
    "json": render_json,
}


def render(data: Mapping[str, Any], fmt: str) -> str:
    return PLAN_FORMATS[fmt](data)


# ---------------------------------------------------------------------------------------
# Apply results


def render_result(result: ApplyResult, labels: ResolutionLabels | None = None) -> str:
    """What failed and what was skipped (and why), then the counts."""
    from loader.execute import OutcomeStatus  # loaded by then: the apply made `result`

    counts = result.counts()
    out = []
    skipped: dict[str, list[str]] = {}
    for outcome in result.outcomes:
        if outcome.status is OutcomeStatus.FAILED:
            why = f": {outcome.message}" if outcome.message else ""
            out.append(f"  failed: {outcome.change.describe()}{why}")
        elif outcome.status is OutcomeStatus.SKIPPED:
            skipped.setdefault(outcome.message, []).append(outcome.change.describe())
    for why, changes in skipped.items():  # many skipped for one reason: one line
        if len(changes) > SKIPPED_LISTED:
            out.append(f"  skipped: {plural(len(changes), 'change')}: {why}")
        else:
            out += [f"  skipped: {change}: {why}" for change in changes]
    if result.stopped:
        out.append(f"  stopped: {result.stopped}; no change was started after it")
    if result.others:
        out.append(f"  {result.others}")
    state = "interrupted" if result.interrupted else "complete" if result.ok else "incomplete"
    out.append(
        f"Apply {state}: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
    return "\n".join(labelled(line, labels or ResolutionLabels()) for line in out) + "\n"


def render_status(status: TargetStatus, *, unicode: bool = True) -> str:
    """`flowkit-loader status`: per indicator and resolution, dates, a coverage strip
    (loaded, partly, gap; `unicode` blocks or ASCII), gaps and grants."""
    from loader.coverage import strip

    how = "checked against the server" if status.refreshed else "from the state record only"
    out = [f"Target {status.target} ({status.url}), state {status.state}, {how}"]
    if status.pending:
        out.append(f"  an interrupted apply left {plural(status.pending, 'change')} in the "
                   "journal: the next apply folds them in")  # fmt: skip
    if status.another_writer:
        out.append(f"  {status.another_writer}")
    if not status.series:
        out.append("  nothing loaded by flowkit-loader yet")
    for s in status.series:
        out.append(
            f"  {status.name_of(s)}: {s.dates[0]}..{s.dates[-1]}, "
            f"{plural(len(s.dates), 'dataset')}, {plural(s.values, 'value')}"
        )
        out.append(f"      coverage: {strip(s, unicode=unicode)}")
        if s.gaps:
            shown = ", ".join(s.gaps[:10]) + (
                f" and {len(s.gaps) - 10} more" if len(s.gaps) > 10 else ""
            )
            out.append(f"      gaps: {shown}")
        grants = ", ".join(f"{scope} {n}" for scope, n in sorted(s.scopes.items()))
        out.append(f"      grants: {grants or 'admin only'}")
        if s.vanished:
            out.append(f"      DRIFT: {plural(s.vanished, 'dataset')} no longer on the server")
    out.append(f"  config: {plural(status.entities, 'entity', 'entities')} recorded")
    last = status.last_apply
    if last is None:
        out.append("  last apply: never")
    else:
        commit = f", commit {last.commit[:12]}" if last.commit else ""
        out.append(f"  last apply: {last.when} by {last.who} ({last.outcome}{commit}, "
                   f"loader {last.loader_version})")  # fmt: skip
    out += [f"note: {note_text(note)}" for note in status.notes]
    return "\n".join(out) + "\n"


def progress_line(
    done: int,
    total: int,
    failed: int,
    seconds: float,
    width: int = 0,
    *,
    share: float | None = None,
    left: float | None = None,
) -> str:
    """`[#####.....] 45/165 27% 12.3/s ETA 0:09` with a bar of `width` (0: no bar): changes
    done, the share of the work done and the seconds left (by the cost model of
    loader/progress.py when given; else by the count of changes)."""
    rate = done / seconds if seconds > 0 else 0.0
    if share is None:
        share = done / total if total else 1.0
        left = (total - done) / rate if rate > 0 else None
    eta = "--:--"
    if left is not None:
        minutes, secs = divmod(int(left), 60)
        hours, minutes = divmod(minutes, 60)
        eta = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    bar = ""
    if width:
        filled = int(width * share)
        bar = f"[{'#' * filled}{'.' * (width - filled)}] "
    failures = f", {failed} failed" if failed else ""
    return f"{bar}{done}/{total} {share:.0%} {rate:.1f}/s ETA {eta}{failures}"


def render_import(report: ImportReport) -> str:
    """What `import` found and recorded."""
    out = [
        f"datasets: {len(report.matched)} match and are recorded, {len(report.differs)} differ "
        f"(recorded; the next apply updates them), {len(report.absent)} absent, "
        f"{len(report.ambiguous)} ambiguous; {report.already} were recorded already"
    ]
    out += [f"  differs: {key}" for key in report.differs[:20]]
    out += [f"  ambiguous (not one mdid at its date): {key}" for key in report.ambiguous[:20]]
    out.append(
        f"config: {len(report.entities_matched)} match, {len(report.entities_differ)} differ, "
        f"{len(report.entities_assumed)} assumed posted with them (no visible dataset "
        f"shows them), {len(report.entities_unseen)} not found"
    )
    out += [f"  not found: {e.kind.singular} {e.label} (the next apply creates it)"
            for e in report.entities_unseen[:20]]  # fmt: skip
    verified, missing = report.grants_verified, report.grants_missing
    unchecked = report.grants_unverified
    for scope in sorted({*verified, *missing, *unchecked}):
        line = f"grants {scope}: {verified.get(scope, 0)} verified"
        if missing.get(scope):
            line += f", {missing[scope]} missing (the next apply grants them)"
        if unchecked.get(scope):
            line += (f", {unchecked[scope]} not checked: no reader credential for {scope} "
                     "(the next apply grants them; 303 where they exist)")  # fmt: skip
        out.append(line)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# Validation reports (`validate --format github | json`)

VALIDATION_FORMAT_VERSION = 1


def _escaped(text: str, *, in_property: bool = False) -> str:
    """GitHub's escaping of a workflow command's message (and, more, of a property)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def github_annotation(problem: Problem) -> str:
    """One problem as a GitHub Actions workflow command: an annotation on the pull
    request's diff at the problem's file, line and column (a Parquet row in the text)."""
    where = problem.position
    properties = [f"file={_escaped(where.path, in_property=True)}"]
    if where.line:
        properties.append(f"line={where.line}")
    if where.column:
        properties.append(f"col={where.column}")
    properties.append("title=flowkit-loader validate")
    message = f"row {where.row}: {problem.message}" if where.row else problem.message
    return f"::{problem.severity.value} {','.join(properties)}::{_escaped(message)}"


def validation_data(report: ValidationReport, *, data: bool, max_problems: int) -> dict[str, Any]:
    """One manifest's report as `validate --format json` gives it
    (schemas/validation.schema.json): its problems (the first `max_problems`), counts, and
    what each data file gave."""
    shown = report.problems[:max_problems]
    return {
        "path": report.path,
        "ok": report.ok,
        "data_checked": data,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "problems": [
            {
                "path": p.position.path,
                "line": p.position.line or None,
                "column": p.position.column or None,
                "row": p.position.row or None,
                "severity": p.severity.value,
                "message": p.message,
            }
            for p in shown
        ],
        "problems_not_shown": len(report.problems) - len(shown),
        "files": [
            {
                "path": f.path,
                "rows": f.rows,
                "values": f.values,
                "datasets": len(f.summaries),
                "missing_cells": dict(sorted(f.missing_cells.items())),
            }
            for f in report.files
        ],
    }


def render_validation_json(reports: list[dict[str, Any]]) -> str:
    return render_json({"format_version": VALIDATION_FORMAT_VERSION, "manifests": reports})
