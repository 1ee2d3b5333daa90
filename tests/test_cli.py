"""The command as a user runs it: the example, the upstream data, the schema, the exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.cli import ApplyProgress, LoaderGroup, cli, colour_wanted
from loader.execute import Outcome, OutcomeStatus
from loader.model import DatasetKey, Position, Problem, Severity
from loader.planner import Action, Change, GrantTarget, Reason
from loader.render import github_annotation
from loader.validation import schema_text, validate
from tests.conftest import DATA, ROOT, need_reference
from tests.helpers import RESIDENTS_SAMPLE, cli_run, write_manifest

EXAMPLE_MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


@pytest.mark.parametrize("manifest", EXAMPLE_MANIFESTS, ids=lambda p: p.name)
def test_every_example_manifest_validates(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    first_line = manifest.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schemas/manifest.schema.json"
    code, lines = run("validate", str(manifest.relative_to(ROOT)))
    assert code == 0, lines
    assert lines[-1].startswith(f"manifests/{manifest.name}: valid: ")
    assert "0 errors" in lines[-1]


def test_example_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, lines = run("validate", "manifests/example.yaml", "--verbose")
    assert code == 0
    assert lines[-1] == (
        "manifests/example.yaml: valid: 2 files, 328 rows, 700 values in 46 datasets "
        "(4 missing cells skipped); 0 errors, 0 warnings"
    )
    assert (
        "  residents.residents srid=2 (District) trid=2 (Month): 2021-01-01..2021-06-01, 6 datasets"
        in lines[0:5][3]
        or any(
            line.startswith("  residents.residents srid=2 (District) trid=2 (Month): ")
            for line in lines
        )
    )


def test_upstream_manifest_validates_with_the_notebooks_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_reference()
    monkeypatch.chdir(ROOT)
    code, lines = run("validate", "tests/data/upstream/manifest.yaml")
    assert code == 0, lines
    assert lines == [
        "tests/data/upstream/manifest.yaml: valid: 4 files, 65,787 rows, 283,530 values in "
        "149 datasets (887 missing cells skipped); 0 errors, 0 warnings"
    ]


def test_upstream_manifest_without_ids_says_exactly_which_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_reference()
    original = (DATA / "upstream" / "manifest.yaml").read_text()
    start, end = original.index("ids:\n"), original.index("revision:")
    copy = tmp_path / "tests" / "data" / "upstream"
    copy.mkdir(parents=True)
    (copy / "manifest.yaml").write_text(original[:start] + original[end:])
    # The copy sits at the same depth as the original, so its relative paths still reach
    # the shared reference folder from a sibling of the project.
    monkeypatch.chdir(tmp_path)
    shared = tmp_path.parent / "shared"
    if not shared.exists():
        shared.symlink_to(ROOT.parent / "shared")
    code, lines = run("validate", "--no-data", "tests/data/upstream/manifest.yaml")
    config = "../shared/reference/upstream-data/config.json"
    hint = "(the backend would assign a new one on every setup, hiding existing data)"
    assert code == 1
    assert lines == [
        f"{config}:3:9: language 'en' has no lid: set it in the config or under ids.languages "
        f"in the manifest {hint}",
        f"{config}:9:9: language 'fr' has no lid: set it in the config or under ids.languages "
        f"in the manifest {hint}",
        f"{config}:15:9: language 'ht' has no lid: set it in the config or under "
        f"ids.languages in the manifest {hint}",
        f"{config}:23:9: data provider 'Digicel Haiti' has no dpid: set it in the config or "
        f"under ids.data_providers in the manifest {hint}",
        *[
            f"{config}:{line}:9: temporal resolution '{label}' has no trid: set it in the "
            f"config or under ids.temporal_resolutions in the manifest "
            "(the backend never assigns one)"
            for line, label in ((466, "Year"), (477, "Month"), (488, "Week"), (499, "Day"))
        ],
        *[
            f"{config}:{line}:9: spatial resolution '{label}' has no srid: set it in the config "
            f"or under ids.spatial_resolutions in the manifest {hint}"
            for line, label in ((512, "Department"), (522, "Commune"), (532, "Communal section"))
        ],
        "tests/data/upstream/manifest.yaml: invalid: 11 errors, 0 warnings",
    ]


def test_schema_command_prints_the_schemas() -> None:
    code, lines = run("schema")
    assert code == 0
    schema = json.loads("\n".join(lines))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    code, lines = run("schema", "--config")
    assert json.loads("\n".join(lines))["title"] == "FlowKit-UI setup config"


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loader", "validate", "--no-data", "manifests/example.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("manifests/example.yaml: valid (data not checked)")


def test_missing_manifest_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, lines = run("validate", "nope.yaml")
    assert code == 1
    assert lines == ["nope.yaml: manifest not found", "nope.yaml: invalid: 1 error, 0 warnings"]


def test_unknown_target_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, lines = run("validate", "--no-data", "--target", "prod", "manifests/example.yaml")
    assert code == 1
    assert lines[0] == (
        "manifests/example.yaml:8:1: no target named 'prod' (targets: local, staging)"
    )


def test_pre_commit_hooks_run_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {hook["id"] for hook in hooks} == {
        "flowkit-loader-validate",
        "flowkit-loader-validate-no-data",
    }
    monkeypatch.chdir(ROOT)
    for hook in hooks:
        entry = hook["entry"].split()
        assert entry[0] == "flowkit-loader"
        code, lines = run(*entry[1:], "manifests/example.yaml")
        assert code == 0, lines


# -- colour, quiet plans, the bar's line ---------------------------------------------------

GREEN_PLUS = "\x1b[32m+\x1b[0m"


@pytest.mark.parametrize(
    ("choice", "environ", "terminal", "wanted"),
    [
        (None, {}, True, True),
        (None, {}, False, False),
        (None, {"NO_COLOR": "1"}, True, False),
        (None, {"NO_COLOR": ""}, True, True),  # no-color.org: an empty value is unset
        (None, {"FORCE_COLOR": "1"}, False, True),
        (None, {"FORCE_COLOR": "0"}, True, True),
        (None, {"FORCE_COLOR": "0"}, False, False),
        (None, {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
        (True, {"NO_COLOR": "1"}, False, True),
        (False, {"FORCE_COLOR": "1"}, True, False),
    ],
)
def test_colour_is_chosen_by_flag_then_no_color_then_force_color_then_terminal(
    choice: bool | None, environ: dict[str, str], terminal: bool, wanted: bool
) -> None:
    assert colour_wanted(choice, environ, terminal) is wanted


def _fresh_plan(
    tmp_path: Path, *plan_args: str, before: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`flowkit-loader BEFORE... plan MANIFEST PLAN_ARGS...` of a fresh local target."""
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS_SAMPLE})
    return cli_run(*before, "plan", str(manifest), *plan_args, env=env)


def test_a_plan_is_coloured_only_when_asked_or_forced(tmp_path: Path) -> None:
    plain = {"NO_COLOR": "", "FORCE_COLOR": ""}
    code, piped = _fresh_plan(tmp_path, env=plain)  # CliRunner's output is a pipe
    assert code == 0 and "\x1b[" not in piped and "\n  +   " in piped
    coloured = [_fresh_plan(tmp_path, "--color", env=plain),
                _fresh_plan(tmp_path, before=("--color",), env=plain),
                _fresh_plan(tmp_path, env={"FORCE_COLOR": "1", "NO_COLOR": ""})]  # fmt: skip
    for code, output in coloured:
        assert code == 0 and f"  {GREEN_PLUS}   " in output
        assert output.replace(GREEN_PLUS, "+") == piped  # colour adds nothing else
    plain_again = [_fresh_plan(tmp_path, "--no-color", env={"FORCE_COLOR": "1"}),
                   _fresh_plan(tmp_path, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})]  # fmt: skip
    assert plain_again == [(0, piped), (0, piped)]


def test_plan_quiet_prints_the_summary_line_only(tmp_path: Path) -> None:
    full = _fresh_plan(tmp_path)[1].splitlines()
    assert _fresh_plan(tmp_path, "-q") == (0, "".join(f"{line}\n" for line in full
                                                      if line.startswith("Plan: ")))  # fmt: skip
    code, output = _fresh_plan(tmp_path, "-q", "--format", "json")
    assert (
        code == 1 and output.splitlines()[-1] == "Error: --quiet is for the text format, not json"
    )


def test_after_an_interrupted_bar_the_summary_starts_on_a_new_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = DatasetKey("c", "c.i", 1, 1, "2021-01-01 00:00:00")
    changes = [Change(Action.CREATE, Reason.NEW, GrantTarget(f"s{n}", key)) for n in range(3)]
    progress = ApplyProgress(quiet=False, verbose=False)
    progress.terminal = True
    progress.begin(changes)
    progress(Outcome(changes[0], OutcomeStatus.DONE))
    progress.end()  # Ctrl-C: two changes never came
    progress.end()  # once only
    drawn = capsys.readouterr().err
    assert drawn.startswith("\r") and drawn.endswith("\n") and drawn.count("\n") == 1
    for change in changes[1:]:
        progress(Outcome(change, OutcomeStatus.DONE))
    progress.end()  # a finished bar ended its own line
    assert capsys.readouterr().err.count("\n") == 1


# -- help ---------------------------------------------------------------------------------


def test_the_top_level_help_groups_every_command_once_in_whole_sentences() -> None:
    code, lines = run("--help")
    assert code == 0
    listed = [name for _, names in LoaderGroup.SECTIONS for name in names]
    assert sorted(listed) == sorted(cli.commands)  # each command in exactly one section
    headings = [line for line in lines if line.endswith(" commands:")]
    assert headings == ["Write commands:", "Review commands:", "Change commands:",
                        "Run commands:"]  # fmt: skip
    for name in listed:
        (row,) = [line for line in lines if line.startswith(f"  {name} ")]
        text = row.removeprefix(f"  {name} ").strip()
        assert text.endswith(".") and not text.endswith("...") and text[0].isupper(), row


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_shows_examples_of_itself(command: str) -> None:
    code, lines = run(command, "--help")
    assert code == 0
    examples = lines[lines.index("  Examples:") + 1 :]
    assert examples and all(f"flowkit-loader {command}" in line for line in examples), examples


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts_are_printed(shell: str) -> None:
    env = {**os.environ, "_FLOWKIT_LOADER_COMPLETE": f"{shell}_source"}
    done = subprocess.run([sys.executable, "-m", "loader"], env=env, capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "_FLOWKIT_LOADER_COMPLETE" in done.stdout, done.stderr
    words = {**env, "_FLOWKIT_LOADER_COMPLETE": "bash_complete", "COMP_WORDS": "flowkit-loader pl",
             "COMP_CWORD": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "loader"], env=words, capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip
    assert done.stdout.split() == ["plain,plan"]


# -- validate --format github | json ------------------------------------------------------


def _broken_manifest(directory: Path) -> Path:
    """A manifest whose residents file has a bad value (line 3) and a bad date (line 4)."""
    directory.mkdir(exist_ok=True)
    text = RESIDENTS_SAMPLE.replace("300,,30", "lots,,30").replace(
        "2021-01-01,EX01-01", "someday,EX01-01"
    )
    return write_manifest(directory, {"residents.csv": text})


def test_validate_annotates_the_pull_requests_diff_on_github(tmp_path: Path) -> None:
    manifest = _broken_manifest(tmp_path)
    report = validate(manifest)
    assert len(report.errors) >= 2 and report.warnings
    _, text = cli_run("validate", str(manifest))
    code, github = cli_run("validate", str(manifest), "--format", "github")
    assert code == 1
    expected = [
        f"::{p.severity.value} file={p.position.path},line={p.position.line},"
        f"col={p.position.column},title=flowkit-loader validate::"
        + p.message.replace("%", "%25")  # GitHub's escape
        for p in report.problems
    ]
    assert github.splitlines() == [*expected, text.splitlines()[-1]]  # then the summary


def test_a_github_annotation_escapes_what_would_end_it() -> None:
    problem = Problem(Position("data/a,b:c.csv", 3, 7), "50% off\nnext", Severity.WARNING)
    assert github_annotation(problem) == (
        "::warning file=data/a%2Cb%3Ac.csv,line=3,col=7,title=flowkit-loader validate::"
        "50%25 off%0Anext"
    )
    on_a_row = Problem(Position("a.parquet", row=12), "not a number")
    assert github_annotation(on_a_row) == (
        "::error file=a.parquet,title=flowkit-loader validate::row 12: not a number"
    )


def test_validate_json_follows_its_schema_for_valid_and_invalid_manifests(tmp_path: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(schema_text("validation.schema.json")))
    (tmp_path / "good").mkdir()
    good = write_manifest(tmp_path / "good", {"residents.csv": RESIDENTS_SAMPLE})
    bad = _broken_manifest(tmp_path / "bad")
    code, output = cli_run(
        "validate", str(good), str(bad), "--format", "json", "--max-problems", "1"
    )
    assert code == 1
    document = json.loads(output)
    validator.validate(document)
    first, second = document["manifests"]
    assert first["ok"] and first["errors"] == 0 and first["data_checked"]
    assert first["files"][0]["rows"] == 4 and first["files"][0]["missing_cells"] == {"": 2}
    assert not second["ok"] and second["errors"] >= 2
    total = second["errors"] + second["warnings"]
    assert len(second["problems"]) == 1 and second["problems_not_shown"] == total - 1
    problem = second["problems"][0]
    assert problem["path"].endswith("residents.csv") and problem["line"] == 3
    assert problem["severity"] == "error" and problem["row"] is None


# -- status --format json | html ----------------------------------------------------------


def test_status_says_which_dates_the_last_apply_wrote(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS_SAMPLE})
    assert cli_run("apply", str(manifest), "--yes")[0] == 0
    first = json.loads(cli_run("status", str(manifest), "--format", "json")[1])
    (residents,) = [s for s in first["series"] if s["indicator_id"] == "residents.residents"]
    assert residents["changed_by_last_apply"] == ["2021-01", "2021-02"]  # all: the first load
    csv = tmp_path / "residents.csv"
    csv.write_text(csv.read_text().replace("2021-02-01,EX01-02,200,", "2021-02-01,EX01-02,201,"))
    assert cli_run("apply", str(manifest), "--yes")[0] == 0
    code, output = cli_run("status", str(manifest), "--format", "json")
    document = json.loads(output)
    assert code == 0 and len(document["history"]) == 2
    found = {s["indicator_id"]: s["changed_by_last_apply"] for s in document["series"]}
    assert found == {"residents.residents": ["2021-02"], "residents.arrived": [],
                     "residents.residents_perKm2": []}  # fmt: skip
    code, page = cli_run("status", str(manifest), "--format", "html")
    assert code == 0 and page.startswith("<!DOCTYPE html>")
    assert 'title="2021-02: 1 of 1 loaded, written by the last apply"' in page


# -- the README's quick start, word for word ----------------------------------------------


def test_the_readmes_quick_start_runs_word_for_word_in_a_fresh_directory(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Quick start\n") :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    block = block[: block.index("\n```\n")]
    assert "flowkit-loader apply" in block
    tool = Path(sys.executable).parent  # the venv's console script beside its python
    env = {**os.environ, "PATH": f"{tool}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deploy.yaml: valid: 1 file, 4 rows, 4 values in 2 datasets" in done.stdout
    assert "Apply complete: 5 done, 0 failed, 0 skipped" in done.stdout
    last = "Plan: 0 to create, 0 to update, 0 to delete; unchanged: 6 config entities, 2 datasets"
    assert done.stdout.splitlines()[-2:] == ["No changes: the target matches the manifest.",
                                             f"{last}, 2 grants"]  # fmt: skip
    assert (tmp_path / "status.html").read_text().startswith("<!DOCTYPE html>")


# -- init ---------------------------------------------------------------------------------


def test_init_writes_a_manifest_that_plans_at_once_and_guards_its_guessed_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("config.json").write_bytes((ROOT / "manifests/example/config.json").read_bytes())
    Path("residents.csv").write_text(RESIDENTS_SAMPLE)
    Path("notes.csv").write_text("a,b\n1,2\n")
    code, output = cli_run("init", "--setup", "config.json", "residents.csv", "notes.csv")
    assert code == 0
    assert output.splitlines() == [
        "wrote deploy.yaml: 1 of 2 files placed, 4 ids to confirm",
        "  not placed: notes.csv: no category has indicators among its columns (a, b)",
    ]
    assert cli_run("validate", "deploy.yaml")[0] == 0
    code, output = cli_run("plan", "deploy.yaml", "-q")
    assert (code, output) == (0, "Plan: 7 to create, 0 to update, 0 to delete; unchanged: "
                                 "0 config entities, 0 datasets, 0 grants\n")  # fmt: skip
    again = cli_run("init", "--setup", "config.json", "residents.csv")
    assert again == (1, "error: deploy.yaml exists: choose another --out, or --force to "
                        "replace it\n")  # fmt: skip
    # Against a remote target, the guessed ids are refused where they are marked.
    text = Path("deploy.yaml").read_text()
    remote = text.replace("default_target: local\n", "default_target: prod\n").replace(
        "targets:\n", "targets:\n  prod: {url: 'https://flowkit.example.org/v1', "
        "credentials: {all: {token: '${TOKEN}'}}}\n", 1)  # fmt: skip
    Path("deploy.yaml").write_text(remote)
    line, column = next((n, t.index("#") + 1) for n, t in enumerate(remote.splitlines(), 1)
                        if "Region: 1  # confirm" in t)  # fmt: skip
    code, output = cli_run("plan", "deploy.yaml", env={"TOKEN": "x"})
    assert code == 1 and output == (
        f"error: deploy.yaml:{line}:{column}: ids.spatial_resolutions.Region is marked "
        "`# confirm` "
        "(and 3 more): init took it from the config's order; check it against the server "
        "and remove the marker (a wrong id loads every dataset again under another)\n"
    )
    assert cli_run("plan", "deploy.yaml", "--target", "local", "-q")[0] == 0  # local: fine


def test_init_from_a_target_it_cannot_use_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((ROOT / "manifests/example/config.json").read_bytes())
    (tmp_path / "r.csv").write_text(RESIDENTS_SAMPLE)
    nowhere = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    args = ["init", "--setup", str(tmp_path / "config.json"), str(tmp_path / "r.csv"),
            "--out", str(tmp_path / "d.yaml"), "--from-target", nowhere]  # fmt: skip
    code, output = cli_run(*args, "--client-id", "me")
    assert (code, output) == (1, "error: --client-id needs --token-url (and the token's "
                                 "--audience)\n")  # fmt: skip
    code, output = cli_run(*args, env={"FLOWKIT_CLIENT_SECRET": "a-token"})
    assert code == 1 and len(output.splitlines()) == 1 and output.startswith("error: ")
    assert "127.0.0.1:9" in output and "a-token" not in output
    assert not (tmp_path / "d.yaml").exists()  # nothing half-written
