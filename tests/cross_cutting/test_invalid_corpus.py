"""The corpus of broken manifests: each case's exact `validate` output, as a user sees it.

Every directory under tests/data/invalid/ (except _base, the valid base the cases break)
holds a manifest.yaml, the small files it needs, an optional env.json of FKL_TEST_*
variables, and expected.txt: the full stdout of `flowkit-loader validate manifest.yaml`
run in that directory (every problem line, then the summary line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from loader.cli import cli
from tests.conftest import DATA

CORPUS = DATA / "invalid"
BASE = CORPUS / "_base"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir() and p.name != BASE.name)
SCHEMA_LINE = "# yaml-language-server: $schema=../../../../schemas/manifest.schema.json"
ENV_PREFIX = "FKL_TEST_"


def case_environment(case: Path) -> dict[str, str]:
    """The FKL_TEST_* variables a case sets (env.json), checked for their names."""
    env_file = case / "env.json"
    if not env_file.is_file():
        return {}
    variables = json.loads(env_file.read_text(encoding="utf-8"))
    assert isinstance(variables, dict), f"{env_file}: must be an object"
    for name, value in variables.items():
        assert name.startswith(ENV_PREFIX), f"{env_file}: {name} is not an {ENV_PREFIX}* name"
        assert isinstance(value, str), f"{env_file}: {name} must be text"
    return variables


def run_validate(case: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """`flowkit-loader validate manifest.yaml` in the case directory, with its environment."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in case_environment(case).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(case)
    result = CliRunner().invoke(cli, ["validate", "manifest.yaml"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"validate crashed on {case.name}") from result.exception
    return result


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_invalid_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (case / "expected.txt").read_text(encoding="utf-8")
    result = run_validate(case, monkeypatch)
    assert result.stdout == expected
    assert result.exit_code == 1


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_case_files(case: Path) -> None:
    """Each case is complete and follows the corpus conventions."""
    manifest = case / "manifest.yaml"
    assert manifest.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE
    lines = (case / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert lines, "expected.txt is empty"
    assert lines[-1].startswith("manifest.yaml: invalid: "), lines[-1]
    case_environment(case)


def test_base_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The base the cases break is itself valid, so each case fails only for its own reason."""
    result = run_validate(BASE, monkeypatch)
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[-1].startswith("manifest.yaml: valid: ")


def test_corpus_size() -> None:
    assert len(CASES) >= 30
