"""The corpus of broken state files: each case's exact stderr and exit code for every
command that reads the state, and proof that a failed command wrote nothing.

Every directory under tests/data/state-invalid/ holds what a target's state folder
holds (`state/record.json`, `.journal`, `.lock`), broken in one way, and expected.txt:
per command, `$ flowkit-loader COMMAND manifest.yaml`, then the command's stderr lines
(the state folder's absolute path written `$DIR`), then `[exit N]`. The manifest is
tests/data/invalid/_base's, with a `local:` target in the test's own folder.

Folders where a file should be are kept in git by a `.keep` file inside them. A state
folder that cannot be written (state-folder-unwritable) is a file where the folder
should be: file modes do not stop root, as the tests run in CI, while nothing can be
created inside a file whoever asks. The same refusal from a really read-only folder
(read-only for this user, or immutable for root) is checked beside the corpus.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.statecases import (
    CASES,
    COMMANDS,
    CORPUS,
    STATE,
    expectations,
    run_command,
    snapshot,
    workspace,
    write_base_manifest,
)

LOCK = f"{STATE}.lock"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_state_case(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for number, expected in enumerate(expectations(case)):
        directory = (tmp_path / str(number)).resolve()  # each command on a fresh copy
        directory.mkdir()
        workspace(case, directory)
        monkeypatch.chdir(directory)
        before = snapshot(directory)
        result = run_command(expected.command, Path("manifest.yaml"))
        stderr = result.stderr.replace(str(directory), "$DIR").splitlines()
        shown = f"{case.name}: {expected.command}"
        assert (stderr, result.exit_code) == (expected.stderr, expected.exit_code), shown
        after = snapshot(directory)
        if expected.exit_code:
            assert result.stdout == "", shown  # refused before showing a plan
            assert after == before, f"{shown}: a failed command wrote"
        else:
            assert result.stdout, shown  # a plan, a status, what unlock did
            if expected.command == "unlock":  # breaking the lock is what it is for
                before.pop(LOCK, None)
            assert after == before, f"{shown}: wrote"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_case_files(case: Path) -> None:
    """Each case is a state folder (or what stands in its place) and pins every command,
    each failure a single `error:` line."""
    assert (case / "state").exists(), f"{case.name}: no state folder"
    found = expectations(case)
    assert [e.command for e in found] == list(COMMANDS)
    assert any(e.exit_code for e in found), f"{case.name}: breaks nothing"
    for expected in found:
        assert expected.exit_code in (0, 1)
        if expected.exit_code:
            assert len(expected.stderr) == 1 and expected.stderr[0].startswith("error: $DIR/")
            assert len(expected.stderr[0]) <= 200, "a message to read at a glance"
        else:
            assert expected.stderr == []


def test_the_cases_break_only_what_they_break(tmp_path: Path) -> None:
    """The corpus' valid record (the lock cases' record.json), without the lock, is read
    by every command, so each case fails for its own reason only."""
    valid = CORPUS / "lock-empty" / STATE
    json.loads(valid.read_bytes())
    for number, command in enumerate(COMMANDS):
        directory = tmp_path / str(number)
        (directory / "state").mkdir(parents=True)
        shutil.copy(valid, directory / STATE)
        result = run_command(command, write_base_manifest(directory))
        assert result.exit_code == 0, (command, result.stderr)
        assert "error:" not in result.stderr, (command, result.stderr)  # progress only


def test_the_corpus_covers_every_class() -> None:
    names = {case.name for case in CASES}
    assert {
        "state-binary", "state-truncated", "state-not-object", "state-wrong-shape",
        "journal-header-not-object", "journal-binary", "journal-entry-wrong-shape",
        "lock-garbage", "lock-is-directory", "state-is-directory", "state-folder-unwritable",
    } <= names  # fmt: skip


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made read-only for real: by its mode for a user, immutable for root (whom
    modes do not stop); skipped, saying why, where neither holds."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    else:
        try:
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True,
                                  text=True, check=False)  # fmt: skip
        except OSError as error:
            pytest.skip(f"cannot make a folder immutable for root (chattr: {error})")
        if done.returncode != 0:
            pytest.skip(f"cannot make a folder immutable for root: {done.stderr.strip()}")
        undo = ["chattr", "-i", str(folder)]
    try:
        probe = folder / "probe"
        with contextlib.suppress(OSError):
            probe.touch()
            probe.unlink()
            pytest.skip(f"{folder}: still writable after {undo[0]}")
        yield
    finally:
        subprocess.run(undo, check=True)


def test_a_read_only_state_folder_refuses_apply_before_the_backend(tmp_path: Path) -> None:
    """Apply takes the lock before it connects (connecting creates an embedded database):
    a state folder it cannot write refuses the apply with nothing written anywhere."""
    manifest = write_base_manifest(tmp_path)
    folder = tmp_path / "state"
    folder.mkdir()
    shutil.copy(CORPUS / "lock-empty" / STATE, folder / "record.json")
    with read_only(folder):
        before = snapshot(tmp_path)
        result = run_command("apply --yes", manifest)
        after = snapshot(tmp_path)
    lock = re.escape(f"{folder.resolve()}/record.json.lock")
    why = "(Permission denied|Operation not permitted|Read-only file system)"
    assert re.fullmatch(f"error: {lock}: cannot write: {why}\n", result.stderr), result.stderr
    assert (result.exit_code, result.stdout) == (1, "")
    assert after == before and not (tmp_path / "backend").exists()
