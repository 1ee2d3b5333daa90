"""Random state files: whatever the state record, its journal or its lock hold (random
bytes, a valid file cut short, valid JSON of random shapes, a valid file with values
replaced), every command that reads them answers with its normal output or one `error:`
line and exit 1, never a traceback; plan and status never write to the state folder,
nor does unlock beyond removing the lock.

Each example runs in a fresh copy of a folder that one real apply of the base manifest
filled (its embedded database and state record), with one file replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loader.record import (
    DatasetDropped,
    DatasetRecorded,
    EntityDropped,
    EntityRecorded,
    GrantChanged,
    Record,
    SetupRecorded,
    event_json,
)
from loader.state import Document
from tests.statecases import STATE, run_command, snapshot, write_base_manifest

PROGRESS = re.compile(r"^apply: \d+/\d+ ")  # apply's log line off a terminal
ERROR = re.compile(r"^error: \S.*$")
# Characters: a message names a path (twice at most), says what is wrong and what to do,
# and quotes a file's text only cut short (model.excerpt: 60 characters); no more.
MAX_ERROR = 400
JOURNAL, LOCK = f"{STATE}.journal", f"{STATE}.lock"


@dataclass(frozen=True)
class Template:
    """A folder after one apply, and the valid files the strategies break."""

    directory: Path
    record: bytes
    header: dict[str, Any]
    entries: list[dict[str, Any]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    directory = tmp_path_factory.mktemp("applied")
    result = run_command("apply --yes", write_base_manifest(directory))
    assert result.exit_code == 0, result.stderr
    data = (directory / STATE).read_bytes()
    document = Document.from_json(data, STATE)
    record = Record.from_content(document.content, STATE)
    entities = list(record.entities.values())
    datasets = list(record.datasets.values())
    events = [
        SetupRecorded(tuple(entities)), *map(EntityRecorded, entities),
        *map(DatasetRecorded, datasets),
        *(GrantChanged(d.key, "read:free_data", d.mdid, True) for d in datasets[:2]),
        GrantChanged(datasets[0].key, "read:free_data", datasets[0].mdid, False),
        DatasetDropped(datasets[-1].key), EntityDropped(entities[-1].kind, entities[-1].id),
    ]  # fmt: skip
    entries = [event_json(e) for e in events]
    header = {"id": "0" * 32, "lineage": document.lineage, "serial": document.serial}
    return Template(directory, data, header, entries)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "grant", "flow", "datasets", "categories", "2021-01-01 00:00:00"]),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def mutations(draw: st.DrawFn, document: Any, depth: int = 0) -> Any:
    """`document` (parsed JSON) with a few values replaced by random ones, or removed,
    at least `depth` levels down where it is that deep."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        parent: Any = None
        key: Any = None
        node = document
        for _ in range(draw(st.integers(depth, 5))):
            if isinstance(node, dict) and node:
                parent, key = node, draw(st.sampled_from(sorted(node)))
            elif isinstance(node, list) and node:
                parent, key = node, draw(st.integers(0, len(node) - 1))
            else:
                break
            node = parent[key]
        if parent is None:
            return draw(json_values)
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_values)
    return document


@st.composite
def records(draw: st.DrawFn, valid: bytes) -> bytes:
    """A state record: bytes, the valid one cut short, JSON of any shape, the valid one
    with values replaced, or a valid header over random content."""
    kind = draw(st.sampled_from(["bytes", "cut", "shape", "mutated", "header"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "cut":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "shape":
        return dumps(draw(json_values))
    document = json.loads(valid)
    if kind == "mutated":  # mostly inside config, datasets and history
        return dumps(draw(mutations(document, depth=draw(st.sampled_from([1, 2, 3])))))
    header = {k: document[k] for k in ("format_version", "lineage", "serial")}
    return dumps({**header, **draw(st.dictionaries(st.sampled_from(sorted(document)), json_values,
                                                   max_size=3))})  # fmt: skip


@st.composite
def journals(draw: st.DrawFn, header: dict[str, Any], entries: list[dict[str, Any]]) -> bytes:
    """A journal: bytes, or lines (valid or broken header, then valid entries, entries
    with values replaced, JSON of any shape, bytes), the last one finished or torn."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    line = st.one_of(
        st.sampled_from(entries).map(dumps),
        st.sampled_from(entries).flatmap(mutations).map(dumps),
        st.sampled_from(entries).flatmap(mutations).map(dumps),
        json_values.map(dumps),
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    )
    # Mostly the valid header, so that the entries are read, and replayed.
    first = draw(st.sampled_from(["valid"] * 4 + ["mutated", "line"]))
    head = {"valid": st.just(dumps(header)), "mutated": mutations(header).map(dumps)}
    lines = [draw(head.get(first, line)), *draw(st.lists(line, max_size=4))]
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\n\n"]))


DEAD_PID = 2**22 + 4321  # above Linux's largest pid: never a running process
HOLDERS = ["ci@elsewhere:12#a1b2c3d4", f"ci@{socket.gethostname()}:{DEAD_PID}#a1b2c3d4",
           f"ci@{socket.gethostname()}:{os.getpid()}#a1b2c3d4", "", "x" * 300]  # fmt: skip

locks = st.one_of(
    st.binary(max_size=60),
    json_values.map(dumps),
    st.fixed_dictionaries(
        {"holder": st.one_of(st.sampled_from(HOLDERS), json_values),
         "expires": st.one_of(st.floats(), st.integers(), st.just(4e9), st.just(0), json_values)}
    ).map(dumps),
)  # fmt: skip


@st.composite
def broken_files(draw: st.DrawFn, template: Template) -> tuple[str, bytes]:
    """Which state file to replace, and with what."""
    which = draw(st.sampled_from([STATE, JOURNAL, LOCK]))
    if which == STATE:
        return which, draw(records(template.record))
    if which == JOURNAL:
        return which, draw(journals(template.header, template.entries))
    return which, draw(locks)


@contextlib.contextmanager
def fresh_copy(template: Template) -> Iterator[Path]:
    """The template's folder copied into a temporary one, removed afterwards."""
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "w"
        shutil.copytree(template.directory, copy)
        yield copy


def check(command: str, template: Template, which: str, data: bytes) -> None:
    """`command` with the file `which` holding `data`: its normal output, or one error."""
    with fresh_copy(template) as directory:
        (directory / which).write_bytes(data)
        # The state folder only: reading a WAL-mode SQLite database recreates its -shm.
        state = (directory / STATE).parent
        before = snapshot(state)
        result = run_command(command, directory / "manifest.yaml")  # a crash raises
        after = snapshot(state)
        assert result.exit_code in (0, 1), (result.exit_code, result.output)
        assert "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if not PROGRESS.match(line)]
        # What the examples reached, for --hypothesis-show-statistics.
        event(f"{which}: exit {result.exit_code}: {_gist(errors[0]) if errors else 'output'}")
        if result.exit_code == 0:
            assert errors == [], result.stderr
        elif errors:
            assert len(errors) == 1 and ERROR.match(errors[0]), result.stderr
            assert len(errors[0]) <= MAX_ERROR, errors[0]
        else:  # an apply some of whose changes failed: its summary says which
            assert command.startswith("apply") and result.stdout, result.output
        if command in ("plan", "status") or (command == "unlock" and result.exit_code):
            assert after == before, f"{command} wrote"
        elif command == "unlock":
            before.pop(Path(LOCK).name, None)
            assert after == before, "unlock wrote something else than removing the lock"


def _gist(error: str) -> str:
    """An error line without its path and values: which check answered."""
    text = re.sub(r"^error: \S+?(:\d+)*: ", "", error)
    return re.sub(r"\(.*?\)|'.*?'|\d+", "_", text)[:70]


FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("command", ["plan", "apply --yes", "status", "unlock", "import"])
@FUZZ
@given(data=st.data())
def test_random_state_files(command: str, template: Template, data: st.DataObject) -> None:
    which, content = data.draw(broken_files(template), label="file")
    check(command, template, which, content)
