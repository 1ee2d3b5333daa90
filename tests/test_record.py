"""loader/record.py: the events an apply records, their journal lines, and the builder
that amends a record with them. The record an apply builds in memory is the one its
journal on disk replays to; replay reads every line format the journal has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import loader
from loader import state
from loader.model import DatasetKey, DatasetStats, DatasetSummary, EntityKind
from loader.record import (
    ApplyEntry,
    DatasetDropped,
    DatasetRecorded,
    EntityDropped,
    EntityRecorded,
    Event,
    GrantChanged,
    Record,
    RecordBuilder,
    RecordedDataset,
    RecordedEntity,
    RecordError,
    SetupRecorded,
    WritingDatasets,
    event_json,
    next_apply,
    replay,
)
from tests.manifests import copy_example, env_for

STATE = Path(".flowkit") / "example.local.state.json"


def dataset(day: int, mdid: int, scopes: frozenset[str] = frozenset()) -> RecordedDataset:
    key = DatasetKey("residents", "residents.residents", 2, 3, f"2021-01-{day:02d} 00:00:00")
    stats = DatasetStats(2, 3 * 10**9, 10**9, 2 * 10**9)
    summary = DatasetSummary(key, "single_location", "v1", f"1:{day:064x}", stats, "a.csv")
    return RecordedDataset(summary, mdid, scopes)


ENTITY = RecordedEntity(EntityKind.CATEGORY, "residents", "Residents", "d" * 64, None)
OTHER = RecordedEntity(EntityKind.LANGUAGE, 1, "English", "e" * 64, "English")


def test_each_event_reads_back_from_its_journal_line() -> None:
    events: list[Event] = [
        SetupRecorded((ENTITY, OTHER)),
        EntityRecorded(ENTITY),
        EntityDropped(EntityKind.LANGUAGE, 1),
        DatasetRecorded(dataset(1, 7, frozenset({"read:free_data"}))),
        DatasetDropped(dataset(1, 7).key),
        WritingDatasets((dataset(2, 0).key, dataset(3, 0).key)),
        GrantChanged(dataset(2, 0).key, "read:free_data", 8, True),
        GrantChanged(dataset(2, 0).key, "read:free_data", 8, False),
    ]
    for event in events:
        line = json.loads(json.dumps(event_json(event)))  # through text, as on disk
        one = RecordBuilder(Record(), writer=next_apply(Record()))  # as an apply builds it
        one.apply(event)
        assert replay(Record(), [line], "j") == one.build(), event
    # The ids keep their JSON type (the format journals have always had).
    assert event_json(EntityDropped(EntityKind.LANGUAGE, 1))["id"] == 1


def test_the_builder_amends_as_the_journal_says() -> None:
    first, second = dataset(1, 7), dataset(2, 8)
    builder = RecordBuilder(Record(datasets={first.key: first}, in_doubt=frozenset()))
    builder.apply(WritingDatasets((second.key,)))
    assert builder.build().in_doubt == {second.key}
    builder.apply(DatasetRecorded(second))  # written: no longer in doubt
    builder.apply(GrantChanged(second.key, "read:free_data", 8, True))
    builder.apply(GrantChanged(first.key, "read:free_data", 99, True))  # another mdid: none
    builder.apply(DatasetDropped(first.key))
    built = builder.build()
    assert built.datasets == {second.key: dataset(2, 8, frozenset({"read:free_data"}))}
    assert built.in_doubt == frozenset()


def test_each_dataset_names_the_apply_that_wrote_it_and_format_1_records_read_as_none() -> None:
    entry = ApplyEntry("2026-01-01T00:00:00+00:00", "me", None, "0.1.0", "fp", "complete")
    old, rewritten = dataset(1, 7), dataset(2, 8)
    record = Record(datasets={old.key: old}, history=(entry, entry))
    builder = RecordBuilder(record, writer=next_apply(record))  # an apply's, or its journal's
    builder.apply(DatasetRecorded(rewritten))
    built = builder.build()
    assert built.datasets[rewritten.key].written == 3 and built.datasets[old.key].written == 0
    found = RecordBuilder(record)  # import's: what it finds no apply of this record wrote
    found.apply(DatasetRecorded(rewritten))
    assert found.build().datasets[rewritten.key].written == 0
    # A journal left behind is folded in by the next apply: its writes are that apply's.
    replayed = replay(record, [event_json(DatasetRecorded(rewritten))], "j")
    assert replayed.datasets[rewritten.key].written == 3
    content = built.to_content()
    assert Record.from_content(content, "r").datasets == built.datasets
    # A format-1 record's datasets carry no marker: read as 0, written back unchanged.
    format_1 = Record(datasets={old.key: old}).to_content()
    assert "written" not in format_1["datasets"][0]
    assert Record.from_content(format_1, "r").to_content() == format_1
    with pytest.raises(RecordError, match=r"datasets\[0\]\.written: an integer expected"):
        Record.from_content({**content, "datasets": [{**content["datasets"][0], "written": "3"}]},
                            "r")  # fmt: skip


def test_an_entry_that_is_not_an_event_is_named_at_its_line() -> None:
    with pytest.raises(RecordError, match=r"^j:3: unreadable journal entry: op: unknown"):
        replay(Record(), [event_json(EntityRecorded(ENTITY)), {"op": "nope"}], "j", [2, 3])
    with pytest.raises(RecordError, match=r"^j \(entry 1\): unreadable journal entry: srid"):
        replay(Record(), [{**event_json(DatasetDropped(dataset(1, 7).key)), "srid": "2"}], "j")


def journal_lines(path: Path) -> list[dict[str, Any]]:
    """The entries of a journal file (its first line is its header)."""
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_the_record_an_apply_builds_is_its_journal_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two applies (a fresh load, then updates, deletes and new grants), each keeping
    its journal: what the apply built in memory from its events
    equals the record before it with the journal on disk replayed."""
    manifest = copy_example(tmp_path)
    here = manifest.parent
    built: list[Record] = []
    build = RecordBuilder.build

    def keep(self: RecordBuilder) -> Record:
        built.append(build(self))
        return built[-1]

    monkeypatch.setattr(RecordBuilder, "build", keep)
    monkeypatch.setattr(state.Journal, "discard", lambda self: None)  # left for the test
    env = env_for(manifest)
    before = Record()
    ops: set[str] = set()
    for edit in (None, "second"):
        if edit:
            text = manifest.read_text().replace("revision: v1.0-example", "revision: v2")
            start = text.index("  - file: example/data/movements_district_daily.csv")
            end = text.index("access:")
            manifest.write_text(text[:start] + text[end:].split("  read:premium_data")[0])
        applied = loader.apply(manifest, environ=env, allow_destroy=True)
        assert applied.result.ok and applied.result.counts()["done"] > 0
        entries = journal_lines(here / f"{STATE}.journal")
        ops |= {entry["op"] for entry in entries}
        assert built[-1] == replay(before, entries, "journal")
        stored = state.Document.from_json((here / STATE).read_bytes(), "record")
        before = Record.from_content(stored.content, "record")
    assert ops == {"setup", "writing", "dataset", "drop_dataset", "grant"}
