#!/usr/bin/env python3
"""Set-up and entry point for developers and CI; needs nothing but Python >= 3.10.

    python3 dev.py demo     the main job: validate, plan and apply the example manifest
    python3 dev.py test     every check: ruff (lint + format), mypy, the whole pytest suite

Both create `.venv/` beside this file on first use and install the project into it
(editable, with the dev extras); they reinstall only when pyproject.toml changes.
Extra arguments after `test` go to pytest (for example `-m slow` or `-k manifest`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".flowkit-installed"


def run(*args: str | Path) -> None:
    completed = subprocess.run([str(a) for a in args], cwd=ROOT, check=False)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing flowkit-loader and its dev tools into .venv ...", flush=True)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def demo() -> None:
    """Validate, plan and apply the example manifest against the embedded local backend,
    then show what is loaded (a second run finds nothing to change)."""
    tool = BIN / "flowkit-loader"
    steps = [
        ("validate: the manifest, its config and data", ["validate", "--verbose"]),
        ("plan: what apply will change", ["plan"]),
        ("apply: the plan, carried out", ["apply", "--yes", "--quiet"]),
        ("status: what the target holds now", ["status"]),
    ]
    for number, (title, (command, *options)) in enumerate(steps, 1):
        print(f"\n== step {number} of {len(steps)}, {title}", flush=True)
        run(tool, command, "manifests/example.yaml", *options)


def test(pytest_args: list[str]) -> None:
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    run(BIN / "python", "-m", "pytest", *(pytest_args or ["-m", "not slow"]))


def main() -> None:
    command, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in {"demo", "test"}:
        print(__doc__)
        sys.exit(2)
    ensure_venv()
    if command == "demo":
        demo()
    else:
        test(rest)


if __name__ == "__main__":
    main()
