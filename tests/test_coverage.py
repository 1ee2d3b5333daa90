"""The pictures of what a target holds: strips, cells, the status document, the report."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import jsonschema

from loader.coverage import (
    HEATMAP_CELLS,
    STRIP_CELLS,
    cells,
    render_status_html,
    status_data,
    strip,
)
from loader.inventory import SeriesStatus, TargetStatus
from loader.model import ResolutionLabels
from loader.record import ApplyEntry
from loader.validation import schema_text

LABELS = ResolutionLabels(((2, "District"),), ((2, "Month"), (4, "Day")))
ENTRY = ApplyEntry("2026-01-02T03:04:05+00:00", "local-admin", None, "0.1.0", "fp", "complete",
                   {"done": 3, "failed": 0, "skipped": 0})  # fmt: skip


def months(*numbers: int) -> list[str]:
    return [f"2021-{m:02d}" for m in numbers]


def monthly(loaded: list[int], changed: list[int] = (), scopes: dict[str, int] | None = None,
            verified: dict[str, int] | None = None) -> SeriesStatus:  # fmt: skip
    gaps = [m for m in range(min(loaded), max(loaded) + 1) if m not in loaded]
    return SeriesStatus("residents.residents", 2, 2, months(*loaded), months(*gaps),
                        10 * len(loaded), scopes or {}, 0, months(*changed),
                        verified or {})  # fmt: skip


def target(*series: SeriesStatus) -> TargetStatus:
    return TargetStatus("local", "local:/x.db", "/x.json", list(series), 3, ENTRY, True, 0,
                        labels=LABELS, history=(ENTRY,))  # fmt: skip


def test_a_strip_shows_loaded_steps_and_gaps_in_order() -> None:
    series = monthly([1, 2, 4, 6], changed=[6])
    assert strip(series) == "██·█·█"
    assert strip(series, unicode=False) == "##.#.#"


def test_long_series_fold_into_cells_of_equal_runs_and_say_what_each_holds() -> None:
    days = [f"2021-{d // 28 + 1:02d}-{d % 28 + 1:02d}" for d in range(300)]
    series = SeriesStatus("i", 2, 4, [d for n, d in enumerate(days) if n % 100 != 50],
                          [days[50], days[150], days[250]], 1, {}, 0)  # fmt: skip
    found = cells(series, STRIP_CELLS)
    assert len(found) == STRIP_CELLS and sum(c.steps for c in found) == 300
    assert {c.state for c in found} == {"loaded", "partly"}
    assert [c.state for c in found].count("partly") == 3
    assert len(strip(series)) == STRIP_CELLS
    assert len(cells(series, 1000)) == 300  # never more cells than steps


def test_the_status_document_follows_its_schema_and_says_what_the_last_apply_wrote() -> None:
    series = monthly([1, 2, 4], changed=[4], scopes={"read:free_data": 3, "read:x": 1},
                     verified={"read:free_data": 2})  # fmt: skip
    document = status_data(target(series))
    jsonschema.Draft202012Validator(json.loads(schema_text("status.schema.json"))).validate(
        document
    )
    (found,) = document["series"]
    assert found["spatial_label"] == "District" and found["temporal_label"] == "Month"
    assert found["dates"] == months(1, 2, 4) and found["gaps"] == months(3)
    assert found["changed_by_last_apply"] == months(4)
    assert found["scopes"] == [
        {"scope": "read:free_data", "recorded": 3, "verified": 2},
        {"scope": "read:x", "recorded": 1, "verified": None},
    ]
    assert document["history"] == [document["last_apply"]]


class Cells(HTMLParser):
    """The heatmap's cells per row, with their classes and titles; and anything a page
    would fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[tuple[str, str]]] = {}
        self.row = ""
        self.fetches: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "link", "img", "iframe") or "src" in found or "href" in found:
            self.fetches.append(tag)
        if tag == "tr" and (found.get("id") or "").startswith("series-"):
            self.row = found["id"] or ""
            self.rows[self.row] = []
        if tag == "td" and "cell" in (found.get("class") or ""):
            self.rows[self.row].append(((found.get("class") or "").split()[1],
                                        found.get("title") or ""))  # fmt: skip


def test_the_html_report_is_self_contained_and_marks_each_cell() -> None:
    page = render_status_html(target(monthly([1, 2, 4], changed=[4], scopes={"read:a": 3})))
    parser = Cells()
    parser.feed(page)
    assert parser.fetches == []
    assert parser.rows == {"series-0": [
        ("loaded", "2021-01: 1 of 1 loaded"),
        ("loaded", "2021-02: 1 of 1 loaded"),
        ("gap", "2021-03: 0 of 1 loaded"),
        ("changed", "2021-04: 1 of 1 loaded, written by the last apply"),
    ]}  # fmt: skip
    assert "residents.residents srid=2 (District) trid=2 (Month)" in page
    assert "not checked (no reader credential)" in page and "3 (recorded)" in page
    assert "2026-01-02T03:04:05+00:00" in page  # the applies


def test_the_report_of_50000_datasets_stays_small() -> None:
    indicators = 46
    days = [f"{2021 + d // 336}-{d % 336 // 28 + 1:02d}-{d % 28 + 1:02d}" for d in range(1087)]
    series = [SeriesStatus(f"i.{n}", 2, 4, days, [], len(days), {"read:a": len(days)}, 0,
                           days[-30:]) for n in range(indicators)]  # fmt: skip
    assert sum(len(s.dates) for s in series) >= 50_000
    page = render_status_html(target(*series))
    parser = Cells()
    parser.feed(page)
    assert all(len(row) <= HEATMAP_CELLS for row in parser.rows.values())
    assert len(parser.rows) == indicators and len(page) < 2_000_000
