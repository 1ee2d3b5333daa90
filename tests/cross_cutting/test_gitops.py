"""docs/gitops.md: its GitHub Actions workflow passes actionlint, and its jobs' commands,
replayed step by step the way a runner would (bash -eo pipefail, the job's environment,
GITHUB_OUTPUT), take a manifest over pull requests and merges against `serve`.

Steps that `uses:` an action (checkout, setup-python, artifacts, the PR comment) are
done by the test itself; `Install` steps are skipped (the loader is installed here). A
step that fails stops the job as on GitHub: only `if: always()` steps run after it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT
from tests.serving import AUDIENCE, SECRET, serving

DOC = ROOT / "docs" / "gitops.md"
BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def workflow_text() -> str:
    return next(b for b in blocks("yaml") if b.startswith("name:"))


def test_the_workflow_passes_actionlint(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "flowkit.yml").write_text(workflow_text())
    actionlint = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    assert actionlint, "actionlint is a dev dependency (pip install -e '.[dev]')"
    done = subprocess.run([actionlint, "-no-color", ".github/workflows/flowkit.yml"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------
# Replay


class Runner:
    """Runs one job of the workflow in a fresh checkout, as GitHub would."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        expressions: Mapping[str, str],
        overrides: Mapping[str, str],
    ) -> None:
        self.workflow = workflow
        self.expressions = expressions
        self.overrides = overrides  # the deployment's own values for the workflow's env
        self.outputs: dict[str, str] = {}  # step name -> its output, of the last job run
        self.failed: list[str] = []

    def value(self, text: Any) -> str:
        """A workflow value with its ${{ ... }} expressions put in."""

        def put(match: re.Match[str]) -> str:
            expression = match.group(1).strip()
            assert expression in self.expressions, f"no value for ${{{{ {expression} }}}}"
            return self.expressions[expression]

        return re.sub(r"\$\{\{(.*?)\}\}", put, str(text))

    def job(self, name: str, checkout: Path, fake_bin: Path, fails: str | None = None) -> list[str]:
        """The steps that ran; `fails` names the one step expected to fail."""
        job = self.workflow["jobs"][name]
        env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
               "GITHUB_REPOSITORY": "flowminder/examplia-deployment",
               "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567"}  # fmt: skip
        for key, value in {**self.workflow.get("env", {}), **job.get("env", {})}.items():
            env[key] = self.value(value)
        env.update(self.overrides)
        outputs = checkout / "github_output"
        env["GITHUB_STEP_SUMMARY"] = str(checkout / "step_summary")
        ran: list[str] = []
        self.outputs, self.failed = {}, []
        for step in job["steps"]:
            condition = step.get("if")
            if self.failed and condition != "always()":
                continue
            if condition is not None and not self.holds(condition, env):
                continue
            if "uses" in step or step.get("name", "").startswith("Install"):
                continue
            step_env = {**env, **{k: self.value(v) for k, v in step.get("env", {}).items()}}
            outputs.write_text("")
            step_env["GITHUB_OUTPUT"] = str(outputs)
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                cwd=checkout, env=step_env, capture_output=True, text=True, timeout=300,
                check=False,
            )  # fmt: skip
            title = step.get("name", step["run"][:20])
            output = f"{name}/{title}: {done.stdout}{done.stderr}"
            assert (done.returncode != 0) == (title == fails), output
            self.outputs[title] = done.stdout + done.stderr
            if done.returncode != 0:
                self.failed.append(title)
            ran.append(title)
        assert fails is None or fails in self.failed, f"{name}/{fails} did not run"
        return ran

    @staticmethod
    def holds(condition: str, env: Mapping[str, str]) -> bool:
        if condition == "always()":
            return True
        match = re.fullmatch(r"env\.(\w+) (==|!=) '(.*)'", condition)
        assert match, f"the replay does not know the condition {condition!r}"
        return (env.get(match.group(1)) == match.group(3)) == (match.group(2) == "==")


def deployment(repository: Path) -> Path:
    """A deployment repository: the example's config and data under deploy/, with the
    target the guide shows."""
    deploy = repository / "deploy"
    shutil.copytree(ROOT / "manifests" / "example", deploy / "example")
    example = (ROOT / "manifests" / "example.yaml").read_text()
    target = next(b for b in blocks("yaml") if b.startswith("targets:"))
    body = example[example.index("# The backend's own config format") :]
    (deploy / "examplia.yaml").write_text("version: 1\n" + target + body)
    return deploy / "examplia.yaml"


def checkout(repository: Path, where: Path) -> Path:
    if where.exists():
        shutil.rmtree(where)
    shutil.copytree(repository, where)
    return where


def test_the_workflow_replayed_against_serve(tmp_path: Path) -> None:
    workflow = yaml.safe_load(workflow_text())
    repository = tmp_path / "repository"
    manifest = deployment(repository)
    store = tmp_path / "store" / "examplia.production.state.json"
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "gh").write_text("#!/bin/sh\necho 4242\n")  # `gh run list`: a run id
    (fake_bin / "gh").chmod(0o755)
    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        overrides = {
            "FLOWKIT_URL": f"{base}/v1",
            "FLOWKIT_STATE": str(store),
            "AUTH0_TOKEN_URL": f"{base}/oauth/token",
            "AUTH0_AUDIENCE": AUDIENCE,
            "ADMIN_CLIENT_ID": "dev-admin",
            "UPDATER_CLIENT_ID": "dev-updater",
        }
        expressions = {
            "secrets.ADMIN_CLIENT_SECRET": SECRET,
            "secrets.UPDATER_CLIENT_SECRET": SECRET,
            "secrets.STATE_AWS_ACCESS_KEY_ID": "",
            "secrets.STATE_AWS_SECRET_ACCESS_KEY": "",
            "github.token": "",
            "github.event.pull_request.head.repo.full_name != github.repository": "false",
        }
        fork = {  # GitHub gives a fork's pull request no secret
            **{name: "" for name in expressions if name.startswith("secrets.")},
            "github.token": "",
            "github.event.pull_request.head.repo.full_name != github.repository": "true",
        }
        runner = Runner(workflow, expressions, overrides)

        # 1. A pull request adds the deployment: validated, planned, everything to create.
        pr = checkout(repository, tmp_path / "pr")
        assert runner.job("plan", pr, fake_bin) == [
            "Validate", "Plan", "Show the plan in the run's summary",
        ]  # fmt: skip
        comment = (pr / "plan.md").read_text()
        assert "**96 to create, 0 to update, 0 to delete" in comment
        assert "refreshed against the server" in comment and (pr / "plan.json").exists()

        # 2. Merged: planned again and applied, being the reviewed plan (the pull
        # request's artifact, as download-artifact fetches it); the snapshot for forks is
        # published.
        main = checkout(repository, tmp_path / "main")
        review(pr, main)
        ran = runner.job("apply", main, fake_bin)
        assert ran == APPLY_STEPS
        assert store.exists() and (main / "snapshot" / "state.json").read_bytes() == (
            store.read_bytes()
        )

        # 3. A pull request from a fork changes one value: no secrets, so an offline plan
        # against the published snapshot (what download-artifact would fetch).
        forked = checkout(repository, tmp_path / "fork")
        csv = forked / "deploy" / "example" / "data" / "residents_district_monthly.csv"
        row = "2021-01-01,EX01-01,"
        csv.write_text(csv.read_text().replace(f"{row}35659,", f"{row}35660,"))
        (forked / "snapshot").mkdir()
        shutil.copy(main / "snapshot" / "state.json", forked / "snapshot" / "state.json")
        ran = Runner(workflow, fork, overrides).job("plan", forked, fake_bin)
        assert ran == ["Validate", "Find the last published state snapshot", "Plan",
                       "Show the plan in the run's summary"]  # fmt: skip
        comment = (forked / "plan.md").read_text()
        assert (forked / "step_summary").read_text() == comment
        assert "NOT refreshed (offline)" in comment
        assert "**2 to create, 1 to update, 0 to delete" in comment  # the update's re-grants
        assert "Saved to" not in comment

        # 4. Merged: the fork's offline plan is the reviewed one; one dataset rewritten.
        shutil.copy(csv, repository / "deploy" / "example" / "data" / csv.name)
        main = checkout(repository, tmp_path / "main")
        review(forked, main)
        assert runner.job("apply", main, fake_bin) == APPLY_STEPS
        assert "Apply complete: 3 done, 0 failed, 0 skipped" in runner.outputs[APPLY_STEPS[1]]

        def plan_exit_code() -> int:
            done = subprocess.run(
                [str(BIN / "flowkit-loader"), "plan", str(manifest), "--detailed-exitcode"],
                env={**os.environ, **overrides, "ADMIN_CLIENT_SECRET": SECRET,
                     "UPDATER_CLIENT_SECRET": SECRET},
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return done.returncode

        assert plan_exit_code() == 0

        # 5. A pull request changes one value and is reviewed; another value is changed
        # after the review (a commit pushed after approval). The merge refuses: the fresh
        # plan has a change the reviewed one has not. Nothing is written.
        edit_value(csv, f"{row}35660,", f"{row}35661,")
        shutil.copy(csv, repository / "deploy" / "example" / "data" / csv.name)
        pr = checkout(repository, tmp_path / "pr")
        runner.job("plan", pr, fake_bin)
        assert "**2 to create, 1 to update, 0 to delete" in (pr / "plan.md").read_text()
        movements = repository / "deploy" / "example" / "data" / "movements_district_daily.csv"
        edit_value(
            movements, "2021-03-01,EX01-01,EX01-02,3607,", "2021-03-01,EX01-01,EX01-02,3608,"
        )
        main = checkout(repository, tmp_path / "main")
        review(pr, main)
        record = store.read_bytes()
        ran = runner.job("apply", main, fake_bin, fails=APPLY_STEPS[1])
        assert ran == APPLY_STEPS
        assert runner.failed == [APPLY_STEPS[1]]
        refusal = runner.outputs[APPLY_STEPS[1]].splitlines()[-1]
        assert refusal == SNEAKED_IN
        assert store.read_bytes() == record and plan_exit_code() == 2
    assert SECRET not in comment


APPLY_STEPS = ["Find the plan of the merged pull request", "Apply what the pull request reviewed",
               "Status", "Publish a state snapshot for offline plans"]  # fmt: skip
SNEAKED_IN = (
    "error: reviewed/plan.json: the reviewed plan differs from a fresh plan: change 1 "
    "(~ dataset movements.travellers srid=2 trid=4 2021-03-01 00:00:00): what is "
    '"dataset residents.residents srid=2 trid=2 2021-01-01 00:00:00" in the reviewed plan, '
    '"dataset movements.travellers srid=2 trid=4 2021-03-01 00:00:00" in a fresh plan; '
    "plan again"
)


def review(pull_request: Path, main: Path) -> None:
    """What download-artifact does in the merge job: the pull request's plan, fetched."""
    (main / "reviewed").mkdir()
    shutil.copy(pull_request / "plan.json", main / "reviewed" / "plan.json")


def edit_value(csv: Path, old: str, new: str) -> None:
    text = csv.read_text()
    assert text.count(old) == 1, old
    csv.write_text(text.replace(old, new))


def test_the_guides_target_without_its_variables_names_them(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from loader.cli import cli

    manifest = deployment(tmp_path)
    result = CliRunner().invoke(cli, ["plan", str(manifest), "--offline"], env={
        "FLOWKIT_URL": None, "FLOWKIT_STATE": None,
    })  # fmt: skip
    assert result.exit_code == 1
    assert result.output == (
        "error: target production: FLOWKIT_STATE, FLOWKIT_URL not set in the environment "
        "(its url or state needs it)\n"
    )
