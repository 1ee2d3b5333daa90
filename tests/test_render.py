"""loader/render.py: text, Markdown and JSON of plans made by `make_plan` on small
hand-made states (tests/test_planner.py's builders) in their JSON form
(`planfile.plan_data`); large plans collapsed and kept within GitHub's comment limit;
progress lines; and `status` rendered from a hand-built TargetStatus."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

from loader.inventory import SeriesStatus, TargetStatus
from loader.model import DatasetKey, DatasetStats, DatasetSummary, ResolutionLabels
from loader.notes import NotRefreshed
from loader.planfile import plan_data
from loader.planner import Origin, Plan, make_plan
from loader.record import Actual, ApplyEntry, Desired, Record
from loader.render import (
    GITHUB_COMMENT_LIMIT,
    _runs,
    mermaid_chart,
    progress_line,
    render_json,
    render_markdown,
    render_status,
    render_text,
)
from tests.test_planner import CONFIG, applied, desired, plan_of, refreshed, summary

ORIGIN = Origin("local", "local:/x/test.db", "deploy.yaml", "/x/deploy.yaml", False, "fp")
HEADER = "Plan for deploy.yaml on target local (refreshed against the server)"


def small_plan() -> Plan:
    """Month 2 changed, month 3 new, month 1 unchanged."""
    want = desired((1, 2, 3), m2=summary(2, digest="x", total=20))
    return plan_of(want, applied(desired((1, 2)))).made_from(ORIGIN)


def large_plan(indicators: list[str], years: range) -> Plan:
    datasets = {}
    for indicator in indicators:
        for year in years:
            key = DatasetKey("residents", indicator, 2, 2, f"{year}-01-01 00:00:00")
            stats = DatasetStats(2, 3 * 10**9, 10**9, 2 * 10**9)
            datasets[key] = DatasetSummary(key, "single_location", "r1", f"1:{indicator}{year}",
                                           stats, "r.csv")  # fmt: skip
    want = Desired(CONFIG, datasets, {k: frozenset({"read:free_data"}) for k in datasets})
    return make_plan(want, Actual(Record(), refreshed())).made_from(ORIGIN)


def test_text_of_a_small_plan() -> None:
    assert render_text(plan_data(small_plan())) == "\n".join([
        HEADER,
        "  ~   dataset residents.residents srid=2 trid=2 2021-02-01 00:00:00: content changed",
        "        count 2, sum 10 -> 20, min 1, max 9 -> 19",
        "        + grant read:free_data (re-grant after update)",
        "  +   dataset residents.residents srid=2 trid=2 2021-03-01 00:00:00: new",
        "        + grant read:free_data (new)",
        "Plan: 3 to create, 1 to update, 0 to delete; unchanged: 6 config entities, 1 dataset, "
        "1 grant",
        "Roles needed: updater, reader",
    ]) + "\n"  # fmt: skip


def test_markdown_of_a_small_plan() -> None:
    markdown = render_markdown(plan_data(small_plan()))
    assert markdown.startswith(f"### {HEADER}\n\n**3 to create, 1 to update, 0 to delete;")
    assert "| `+` create | 3 |\n| `~` update | 1 |\n| `-` delete | 0 |" in markdown
    assert "<details><summary>5 lines of changes</summary>\n\n```diff\n~ dataset " in markdown
    assert "    + grant read:free_data (new)\n```\n\n</details>\n" in markdown
    assert "Truncated" not in markdown


def test_json_is_the_plan_data_sorted_and_indented() -> None:
    data = plan_data(small_plan())
    text = render_json(data)
    assert json.loads(text) == data and text.endswith("}\n")
    assert text.startswith('{\n "changes": [\n  {\n   "action": "update",')
    assert data["summary"] == {"create": 3, "update": 1, "delete": 0, "replace": 0,
                               "destructive": 0}  # fmt: skip


def test_no_changes_and_notes() -> None:
    want = desired()
    data = plan_data(plan_of(want, applied(want)).made_from(ORIGIN))
    data["notes"] = ["first", "second"]
    text = render_text(data)
    assert text.splitlines()[1:] == [
        "No changes: the target matches the manifest.", "note: first", "note: second",
        "Plan: 0 to create, 0 to update, 0 to delete; unchanged: 6 config entities, "
        "3 datasets, 3 grants",
    ]  # fmt: skip
    markdown = render_markdown(data)
    assert "> **Note:** first\n> **Note:** second\n" in markdown
    assert markdown.endswith("No changes: the target matches the manifest.\n")


def test_many_datasets_of_one_indicator_collapse_into_one_line() -> None:
    data = plan_data(large_plan(["residents.residents"], range(1000, 3000)))
    lines = render_text(data).splitlines()
    assert lines[6:9] == [
        "  +   datasets of residents.residents srid=2 trid=2: 1000-01-01..2999-01-01, "
        "2,000 datasets: new",
        "        4,000 values",
        "        + grant read:free_data x2000 (new)",
    ]  # fmt: skip
    assert "8 lines of changes" in render_markdown(data)


def test_markdown_of_a_large_plan_stays_within_the_comment_limit() -> None:
    data = plan_data(large_plan([f"residents.i{n}" for n in range(3000)], range(2021, 2022)))
    markdown = render_markdown(data)
    assert len(markdown) <= GITHUB_COMMENT_LIMIT
    assert "of 6,005 lines are not shown" in markdown and "</details>" in markdown
    assert len(render_markdown(data, limit=10_000)) <= 10_000


def test_progress_line_shapes() -> None:
    assert progress_line(45, 165, 0, 3.66, width=10) == "[##........] 45/165 27% 12.3/s ETA 0:09"
    assert progress_line(0, 10, 0, 0) == "0/10 0% 0.0/s ETA --:--"
    assert progress_line(10, 10, 2, 2.0, width=4) == "[####] 10/10 100% 5.0/s ETA 0:00, 2 failed"
    assert progress_line(0, 0, 0, 0, width=5) == "[#####] 0/0 100% 0.0/s ETA --:--"
    assert progress_line(1, 121, 0, 1.0) == "1/121 1% 1.0/s ETA 2:00"


def test_render_status() -> None:
    gaps = [f"2021-{m:02d}" for m in range(2, 14)]
    series = SeriesStatus("residents.residents", 2, 2, ["2021-01", "2022-03"], gaps, 16,
                          {"read:premium_data": 2, "read:free_data": 1}, 1)  # fmt: skip
    bare = SeriesStatus("movements.travellers", 2, 4, ["2021-03-01"], [], 1, {}, 0)
    last = ApplyEntry("2026-01-02T03:04:05+00:00", "local-admin", "0123456789abcdef",
                      "0.1.0", "fp", "complete")  # fmt: skip
    status = TargetStatus("local", "local:/x.db", "/x.json", [series, bare], 1, last, True, 3,
                          (NotRefreshed(),), "another writer was here")  # fmt: skip
    assert render_status(status).splitlines() == [
        "Target local (local:/x.db), state /x.json, checked against the server",
        "  an interrupted apply left 3 changes in the journal: the next apply folds them in",
        "  another writer was here",
        "  residents.residents srid=2 trid=2: 2021-01..2022-03, 2 datasets, 16 values",
        "      coverage: █" + "·" * 12 + "█",
        "      gaps: " + ", ".join(gaps[:10]) + " and 2 more",
        "      grants: read:free_data 1, read:premium_data 2",
        "      DRIFT: 1 dataset no longer on the server",
        "  movements.travellers srid=2 trid=4: 2021-03-01..2021-03-01, 1 dataset, 1 value",
        "      coverage: █",
        "      grants: admin only",
        "  config: 1 entity recorded",
        "  last apply: 2026-01-02T03:04:05+00:00 by local-admin (complete, commit 0123456789ab, "
        "loader 0.1.0)",
        "note: not refreshed: planned against the state record alone (--offline)",
    ]  # fmt: skip
    empty = TargetStatus("t", "u", "s", [], 0, None, False, 0)
    assert render_status(empty) == (
        "Target t (u), state s, from the state record only\n  nothing loaded by flowkit-loader "
        "yet\n  config: 0 entities recorded\n  last apply: never\n"
    )


def test_labelled_plans_show_each_resolutions_label_beside_its_id_and_colour_symbols() -> None:
    labels = ResolutionLabels(((2, "District"),), ((2, "Month"),))
    data = plan_data(small_plan().made_from(replace(ORIGIN, labels=labels)))
    assert data["labels"] == {"spatial": {"2": "District"}, "temporal": {"2": "Month"}}
    plain = render_text(plan_data(small_plan()))
    text = render_text(data)
    assert text == plain.replace("srid=2 trid=2", "srid=2 (District) trid=2 (Month)")
    assert "srid=2 (District) trid=2 (Month) 2021-03-01" in render_markdown(data)
    painted = render_text(data, lambda symbol: f"<{symbol}>")
    assert "  <~>   dataset residents.residents srid=2 (District)" in painted
    assert "        <+> grant read:free_data (new)" in painted
    assert painted.replace("<", "").replace(">", "") == text.replace("->", "-")  # symbols only


def test_the_markdown_plan_carries_a_gantt_chart_of_its_date_ranges() -> None:
    markdown = render_markdown(plan_data(small_plan()))
    chart = markdown[markdown.index("```mermaid\n") : markdown.index("```\n\n<details>")]
    assert chart.splitlines()[1:] == [
        "gantt",
        "    title Date ranges this plan writes or deletes",
        "    dateFormat YYYY-MM-DD",
        "    axisFormat %Y-%m-%d",
        "    section residents",
        "    create residents.residents srid=2 trid=2 :2021-03-01, 2021-03-02",
        "    update residents.residents srid=2 trid=2 :active, 2021-02-01, 2021-02-02",
    ]


def test_runs_split_where_steps_are_missing() -> None:
    months = [date(2021, m, 1) for m in (1, 2, 3, 5, 6)]
    assert _runs(months) == [(date(2021, 1, 1), date(2021, 3, 29)),
                             (date(2021, 5, 1), date(2021, 6, 29))]  # fmt: skip
    assert _runs([date(2021, 1, 1)]) == [(date(2021, 1, 1), date(2021, 1, 2))]


def test_a_chart_of_many_indicators_folds_by_category_and_fits_the_comment() -> None:
    data = plan_data(large_plan([f"residents.i{n}" for n in range(50)], range(2000, 2030, 2)))
    chart = mermaid_chart(data)
    assert chart and len(chart) < 20  # one bar per run of the category, not 50 x 15
    assert all(" all indicators " in line for line in chart if line.startswith("    create"))
    markdown = render_markdown(data)
    assert "\n".join(chart) in markdown and len(markdown) <= GITHUB_COMMENT_LIMIT
    config_only = make_plan(Desired(CONFIG, {}, {}), Actual(Record(), refreshed()))
    assert mermaid_chart(plan_data(config_only)) == []  # no dataset changes: no chart
