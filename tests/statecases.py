"""What the tests of broken state files share: a valid manifest with a `local:` target
and its state record in a folder of the test's own, the commands that read the state,
and a snapshot of a folder to show that a failed command wrote nothing.

The manifest is tests/data/invalid/_base's: the state tests break the state record, its
journal and its lock, never the manifest.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from loader.cli import cli
from tests.conftest import DATA

INVALID_BASE = DATA / "invalid" / "_base"
STATE = "state/record.json"  # not *.state.json: git ignores those
# The commands a state file reaches, each as `flowkit-loader COMMAND manifest.yaml` runs it.
COMMANDS = ("plan", "status", "apply --yes", "import", "unlock")


def write_base_manifest(directory: Path, state: str = STATE) -> Path:
    """The base manifest, its config and data read where they are, with a target whose
    database and state record are in `directory` (`backend/test.db`, `state`). Built from
    the parsed base rather than its text, so that an edit of the base keeps working."""
    document = yaml.safe_load((INVALID_BASE / "manifest.yaml").read_text(encoding="utf-8"))
    document["data_root"] = str((INVALID_BASE / document.get("data_root", ".")).resolve())
    document["setup"] = str((INVALID_BASE / document["setup"]).resolve())
    for entry in document["datasets"]:
        entry["file"] = str((INVALID_BASE / entry["file"]).resolve())
    document["targets"] = {"local": {"url": "local:backend/test.db", "state": state}}
    manifest = directory / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return manifest


def run_command(command: str, manifest: Path) -> Result:
    """One command on `manifest`; a crash (anything but an exit) fails the test with
    its traceback."""
    result = CliRunner().invoke(cli, [*command.split(), str(manifest)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{command} crashed: {result.stderr}") from result.exception
    return result


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


CORPUS = DATA / "state-invalid"


CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())


@dataclass(frozen=True)
class Expected:
    command: str
    stderr: list[str]
    exit_code: int


def expectations(case: Path) -> list[Expected]:
    """The blocks of a case's expected.txt, in order."""
    found: list[Expected] = []
    command: str | None = None
    lines: list[str] = []
    for line in (case / "expected.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("$ flowkit-loader "):
            assert command is None, f"{case.name}: {line!r} before the last block's exit"
            command = line.removeprefix("$ flowkit-loader ").removesuffix(" manifest.yaml")
            lines = []
        elif (exit_code := re.fullmatch(r"\[exit (\d+)\]", line)) is not None:
            assert command is not None, f"{case.name}: an exit without a command"
            found.append(Expected(command, lines, int(exit_code.group(1))))
            command = None
        else:
            assert command is not None, f"{case.name}: {line!r} outside a block"
            lines.append(line)
    assert command is None, f"{case.name}: the last block has no exit"
    return found


def workspace(case: Path, directory: Path) -> Path:
    """The case's state folder and the base manifest in `directory`; the manifest path."""
    shutil.copytree(case, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.txt"))
    return write_base_manifest(directory)
