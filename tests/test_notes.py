"""The note types of loader/notes.py as `render.note_text` words them: one exact sentence
per type, and every type of the `Note` union covered (a new type without a wording would
render as None)."""

from __future__ import annotations

import typing

import pytest

from loader.model import DatasetKey, EntityKind
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
from loader.render import note_text

KEY = DatasetKey("residents", "residents.residents", 2, 2, "2021-01-01 00:00:00")
SHOWN = "residents.residents srid=2 trid=2 2021-01-01 00:00:00"

CASES: list[tuple[Note, str]] = [
    (NotRefreshed(), "not refreshed: planned against the state record alone (--offline)"),
    (ConfigLeftOut(3), "3 config change(s) left out by --only"),
    (KeptInUse(EntityKind.SPATIAL_RESOLUTION, "District"),
     "spatial resolution District is removed from the manifest but kept: datasets still use it"),
    (KeptInUse(EntityKind.CATEGORY, "residents"),
     "category residents is removed from the manifest but kept: datasets still use it"),
    (GrantsDroppedByUpdate(KEY, ("read:free_data", "read:premium_data")),
     f"{SHOWN}: the update drops its grant(s) to read:free_data, read:premium_data "
     "(no longer in the access rules)"),
    (GrantsUnchecked(("read:free_data",)),
     "grants cannot be listed and an admin token sees every dataset: a grant removed behind "
     "the loader's back would not show for read:free_data (configure a reader credential per "
     "scope under credentials.scopes to check)"),
    (Duplicated(1, KEY, (4, 9)),
     f"another writer: 1 identity is on the server more than once ({SHOWN}: mdids 4, 9); "
     "apply refuses until they are removed"),
    (Duplicated(2, KEY, (4, 9, 11)),
     f"another writer: 2 identities are on the server more than once ({SHOWN}: mdids 4, 9, "
     "11); apply refuses until they are removed"),
    (Unexplained(5, KEY, 17),
     f"another writer: 5 dataset(s) of the manifest on the server that no apply of this "
     f"record wrote ({SHOWN}: mdid 17); apply refuses (`import` takes over data loaded by "
     "other means)"),
    (Unrecorded("movements.travellers", 2, 4, 12),
     "12 dataset(s) of movements.travellers srid=2 trid=4 on the server are not in the state "
     "record (loaded by other means; `import` takes them over; never deleted by the loader)"),
    (NoSuchResolution("residents.arrived", 7),
     "residents.arrived trid=7: no such temporal resolution in the config; its datasets were "
     "not checked"),
]  # fmt: skip


@pytest.mark.parametrize(("note", "text"), CASES, ids=lambda c: type(c).__name__)
def test_each_note_is_worded_exactly(note: Note, text: str) -> None:
    assert note_text(note) == text


def test_every_type_of_the_note_union_has_a_case_and_a_wording() -> None:
    union = set(typing.get_args(Note))
    assert len(union) == 9
    assert {type(note) for note, _ in CASES} == union
    for note, _ in CASES:
        worded = note_text(note)
        assert isinstance(worded, str) and worded and "\n" not in worded


def test_notes_are_values() -> None:
    """Frozen and compared by value: a plan's notes can be deduplicated and compared."""
    assert Unrecorded("a", 1, 2, 3) == Unrecorded("a", 1, 2, 3)
    assert Unrecorded("a", 1, 2, 3) != Unrecorded("a", 1, 2, 4)
    assert len({NotRefreshed(), NotRefreshed(), ConfigLeftOut(1)}) == 2
    with pytest.raises(AttributeError):
        ConfigLeftOut(1).count = 2  # type: ignore[misc]
