"""What was reviewed is what gets applied: a saved plan's digest, its signature with
FLOWKIT_PLAN_KEY, its format version, and `apply MANIFEST --reviewed PLAN`, through the
CLI with their exact one-line messages and exit codes."""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loader import planfile
from tests.helpers import cli_run as run
from tests.manifests import copy_example, env_for

KEY = "plan-key-canary-7f3c9a"
Document = dict[str, Any]


def save(manifest: Path, path: Path, *extra: str, key: str | None = None) -> Document:
    env = env_for(manifest) | ({planfile.KEY_ENV: key} if key else {})
    code, output = run("plan", str(manifest), "--out", str(path), *extra, env=env)
    assert code == 0, output
    document: Document = json.loads(path.read_text())
    return document


def write(path: Path, document: Document) -> None:
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def reseal(document: Document) -> Document:
    """What someone who can rewrite the file does: its digest made again."""
    sealed = planfile.seal(document, environ={})
    planfile.verify(sealed, "resealed", environ={})
    return sealed


def first(document: Document, **fields: str) -> dict[str, Any]:
    change: dict[str, Any] = next(
        c for c in document["changes"] if all(c[k] == v for k, v in fields.items())
    )
    return change


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Document]:
    """The example planned once (96 creates) for the refusals, which write nothing."""
    root = tmp_path_factory.mktemp("planned")
    manifest = copy_example(root)
    return manifest, root / "plan.json", save(manifest, root / "plan.json")


def refused(manifest: Path, path: Path, *, env: dict[str, str | None] | None = None) -> list[str]:
    """`show` and `apply` of `path`: both exit 1 with one line, the same; nothing written."""
    full = {**env_for(manifest), planfile.KEY_ENV: None, **(env or {})}
    lines = []
    for command in (["show", str(path)], ["apply", str(path), "--yes"]):
        code, output = run(*command, env=full)  # type: ignore[arg-type]
        assert code == 1 and output.count("\n") == 1 and "Traceback" not in output, output
        lines.append(output)
    assert lines[0] == lines[1]
    assert (
        not (manifest.parent / ".flowkit").exists()
        and not (manifest.parent / "example.db").exists()
    )
    return [lines[0].rstrip("\n")]


# ---------------------------------------------------------------------------------------
# The digest


def _grant_scope(d: Document) -> None:
    grant = first(d, subject="grant", scope="read:free_data")
    grant["scope"] = "read:premium_data"


def _action(d: Document) -> None:
    first(d, subject="dataset").update(action="delete", symbol="-")


def _stats(d: Document) -> None:
    first(d, subject="dataset")["dataset"]["stats"]["max"] = "1"


TAMPERED: dict[str, Callable[[Document], object]] = {
    "changes emptied": lambda d: d.update(changes=[]),
    "a grant's scope edited": _grant_scope,
    "an action changed": _action,
    "a change's reason edited": lambda d: first(d, subject="dataset").update(reason="drifted"),
    "a change's words edited": lambda d: first(d, subject="grant").update(what="grant nothing"),
    "a dataset's stats edited": _stats,
    "a change removed": lambda d: d["changes"].pop(),
    "summary counts edited": lambda d: d["summary"].update(create=1),
    "unchanged counts edited": lambda d: d["unchanged"].update(dataset=46),
    "target edited": lambda d: d.update(target="production"),
    "target url edited": lambda d: d.update(target_url="local:elsewhere.db"),
    "manifest edited": lambda d: d.update(manifest="other.yaml"),
    "refreshed edited": lambda d: d.update(refreshed=False),
    "only edited": lambda d: d.update(only=["category=residents"]),
    "roles edited": lambda d: d.update(roles=["admin"]),
    "notes edited": lambda d: d["notes"].append("all is well"),
    "fingerprint edited": lambda d: d.update(fingerprint="0" * 64),
    "a signature added": lambda d: d.update(signature="0" * 64),
    "a field added": lambda d: d.update(comment="reviewed"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERED))
def test_a_plan_changed_after_it_was_written_is_refused_by_show_and_apply(
    planned: tuple[Path, Path, Document], tmp_path: Path, tamper: str
) -> None:
    manifest, _, document = planned
    changed = copy.deepcopy(document)
    TAMPERED[tamper](changed)
    assert changed != document
    edited = tmp_path / "plan.json"
    write(edited, changed)
    assert refused(manifest, edited) == [
        f"error: {edited}: its digest does not match its content: it was changed after "
        "`plan --out` wrote it; plan again"
    ]


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*path, key)
            yield from leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*path, index)
            yield from leaves(inner, (*path, index))


def test_the_digest_covers_every_field_of_the_document(
    planned: tuple[Path, Path, Document],
) -> None:
    """Every value (and every key's presence) of a plan, one change of each subject and
    action kept, changed in memory: verify refuses each. What `show` renders is a part."""
    _, _, document = planned
    kinds: dict[tuple[str, str], int] = {}
    for index, change in enumerate(document["changes"]):
        kinds.setdefault((change["subject"], change["action"]), index)
    sample = {**document, "changes": [document["changes"][i] for i in sorted(kinds.values())]}
    sample = reseal(sample)
    checked = 0
    for path in leaves(sample):
        if path == ("digest",):
            continue
        for mutate in ("change", "remove"):
            changed = copy.deepcopy(sample)
            parent = changed
            for step in path[:-1]:
                parent = parent[step]
            if mutate == "remove":
                del parent[path[-1]]
            else:
                value = parent[path[-1]]
                parent[path[-1]] = (
                    not value if isinstance(value, bool)
                    else value + 1 if isinstance(value, int)
                    else value + "x" if isinstance(value, str)
                    else None
                )  # fmt: skip
            expected = (
                "plan format version"
                if path == ("format_version",) and mutate == "change"
                else "its digest does not match"
            )
            with pytest.raises(planfile.LoaderError, match=expected):
                planfile.verify(changed, "p.json", environ={})
            checked += 1
    assert checked == 2 * (len(list(leaves(sample))) - 1) > 150  # all but the digest


def test_a_file_without_a_digest_is_not_a_valid_plan(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, document = planned
    edited = tmp_path / "plan.json"
    write(edited, {k: v for k, v in document.items() if k != "digest"})
    assert refused(manifest, edited) == [
        f"error: {edited}: not a valid plan (top level: 'digest' is a required property)"
    ]


def test_a_plan_of_format_version_1_is_refused(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, document = planned
    old = tmp_path / "plan.json"
    write(old, {**{k: v for k, v in document.items() if k != "digest"}, "format_version": 1})
    assert refused(manifest, old) == [
        f"error: {old}: plan format version 1; this loader reads version 2 only: plan again"
    ]


def test_a_plan_nested_too_deeply_is_one_line(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, _ = planned
    deep = tmp_path / "plan.json"
    deep.write_text("[" * 100_000)
    assert refused(manifest, deep) == [f"error: {deep}: not a plan file: nested too deeply"]


def test_plan_format_json_prints_the_sealed_document_that_show_reads(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, document = planned
    code, output = run("plan", str(manifest), "--format", "json", env=env_for(manifest))
    assert code == 0
    printed = json.loads(output)
    assert printed["format_version"] == 2 and "manifest_from_plan" not in printed
    assert printed["changes"] == document["changes"]
    saved = tmp_path / "printed.json"
    saved.write_text(output)
    assert run("show", str(saved), "--format", "json") == (0, output)


# ---------------------------------------------------------------------------------------
# Rewritten with its digest: apply compares what the file shows with a fresh plan


FORGED = {
    "changes emptied": (
        lambda d: d.update(changes=[], summary={**d["summary"], "create": 0}),
        "change 1 (+ setup (the whole config, languages included)) is in a fresh plan, not "
        "in the saved plan",
    ),
    "a grant's scope edited": (
        _grant_scope,
        "change 71 (+ grant read:free_data -> residents.residents srid=2 trid=2 2021-01-01 "
        '00:00:00): scope is "read:premium_data" in the saved plan, "read:free_data" in a '
        "fresh plan",
    ),
    "a dataset's stats edited": (
        _stats,
        "change 2 (+ dataset movements.travellers srid=2 trid=4 2021-03-01 00:00:00): "
        'dataset.stats.max is "1" in the saved plan, "3910" in a fresh plan',
    ),
    "summary counts edited": (
        lambda d: d["summary"].update(create=1),
        "summary.create is 1 in the saved plan, 96 in a fresh plan",
    ),
    "notes edited": (
        lambda d: d["notes"].append("all is well"),
        'notes is ["all is well"] in the saved plan, [] in a fresh plan',
    ),
}


@pytest.mark.parametrize("forgery", sorted(FORGED))
def test_a_plan_rewritten_with_its_digest_shows_but_does_not_apply(
    example: Path, tmp_path: Path, forgery: str
) -> None:
    """The digest is no defence against someone who can rewrite the file: apply still
    carries out only a fresh plan, and only when the file shows exactly that."""
    path = tmp_path / "plan.json"
    document = save(example, path)
    tamper, difference = FORGED[forgery]
    tamper(document)
    write(path, reseal(document))
    assert run("show", str(path), env=env_for(example))[0] == 0
    code, output = run("apply", str(path), env=env_for(example))
    assert (code, output.splitlines()[-1]) == (
        1, f"error: {path}: the saved plan differs from a fresh plan: {difference}; plan again"
    )  # fmt: skip
    code, output = run("plan", str(example), "--detailed-exitcode", env=env_for(example))
    assert code == 2 and "Plan: 96 to create" in output  # nothing was written


# ---------------------------------------------------------------------------------------
# FLOWKIT_PLAN_KEY


def test_a_signed_plan_is_shown_and_applied_with_its_key(example: Path, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    document = save(example, path, key=KEY)
    assert len(document["signature"]) == 64 and KEY not in path.read_text()
    env = env_for(example) | {planfile.KEY_ENV: KEY}
    code, shown = run("show", str(path), env=env)
    assert code == 0 and shown.startswith("Plan for ") and KEY not in shown
    code, output = run("apply", str(path), "-q", env=env)
    assert (code, output) == (0, "Apply complete: 96 done, 0 failed, 0 skipped\n")
    state = example.parent / ".flowkit" / "example.local.state.json"
    assert KEY not in state.read_text()


def test_a_signed_plan_without_the_key_is_refused(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, _ = planned
    path = tmp_path / "plan.json"
    save(manifest, path, key=KEY)
    assert refused(manifest, path) == [
        f"error: {path}: the plan is signed: set FLOWKIT_PLAN_KEY to the key that signed it "
        "to read it"
    ]


def test_an_unsigned_plan_is_refused_when_the_key_is_set(
    planned: tuple[Path, Path, Document],
) -> None:
    manifest, path, _ = planned
    assert refused(manifest, path, env={planfile.KEY_ENV: KEY}) == [
        f"error: {path}: the plan is not signed, and FLOWKIT_PLAN_KEY is set: only plans "
        "signed with that key are accepted; plan again with it"
    ]


@pytest.mark.parametrize("how", ["signed with another key", "rewritten with its digest"])
def test_a_plan_signed_with_another_key_or_forged_is_refused(
    planned: tuple[Path, Path, Document], tmp_path: Path, how: str
) -> None:
    manifest, _, _ = planned
    path = tmp_path / "plan.json"
    if how == "signed with another key":
        save(manifest, path, key="another-" + KEY)
    else:
        document = save(manifest, path, key=KEY)
        _grant_scope(document)
        document["digest"] = planfile._digest(document)  # the signature needs the key
        write(path, document)
    lines = refused(manifest, path, env={planfile.KEY_ENV: KEY})
    assert lines == [
        f"error: {path}: its signature is not FLOWKIT_PLAN_KEY's: it was signed with another "
        "key; plan again with this one"
    ]
    assert KEY not in lines[0]


def test_an_empty_key_is_no_key(planned: tuple[Path, Path, Document]) -> None:
    """GitHub gives a fork's pull request an empty string for every secret."""
    _, path, _ = planned
    assert run("show", str(path), env={planfile.KEY_ENV: ""})[0] == 0


# ---------------------------------------------------------------------------------------
# apply MANIFEST --reviewed PLAN


def test_a_reviewed_plan_applies_when_the_fresh_plan_has_its_changes(
    example: Path, tmp_path: Path
) -> None:
    """Its fingerprint need not match (the manifest gained a comment since): its changes
    are what counts. Off a terminal, without --yes: the reviewed plan was the confirmation."""
    path = tmp_path / "pr-plan.json"
    save(example, path)
    example.write_text(example.read_text() + "# reviewed in #42\n")
    code, output = run("apply", str(path), env=env_for(example))
    assert (code, output.splitlines()[-1]) == (
        1, f"error: {path}: the saved plan is stale: the manifest, its data, the state record "
        "or the server changed since it was made; plan again",
    )  # fmt: skip
    code, output = run("apply", str(example), "--reviewed", str(path), "-q", env=env_for(example))
    assert (code, output) == (0, "Apply complete: 96 done, 0 failed, 0 skipped\n")


def test_an_offline_plan_is_applied_as_its_saved_message_says(
    example: Path, tmp_path: Path
) -> None:
    path = tmp_path / "offline.json"
    code, output = run("plan", str(example), "--offline", "--out", str(path),
                       env=env_for(example))  # fmt: skip
    command = f"flowkit-loader apply {example} --reviewed {path}"
    assert (code, output.splitlines()[-1]) == (
        0, f"Saved to {path}: an offline plan is for review: apply it with `{command}`."
    )  # fmt: skip
    code, output = run(*shlex.split(command)[1:], "-q", env=env_for(example))
    assert (code, output) == (0, "Apply complete: 96 done, 0 failed, 0 skipped\n")


def test_a_plan_made_online_says_apply_carries_it_out(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, _ = planned
    path = tmp_path / "plan.json"
    code, output = run("plan", str(manifest), "--out", str(path), env=env_for(manifest))
    assert (code, output.splitlines()[-1]) == (
        0, f"Saved to {path}: `flowkit-loader apply {path}` carries out exactly this plan."
    )  # fmt: skip


def test_a_reviewed_plan_whose_changes_differ_is_refused_and_nothing_is_written(
    example: Path, tmp_path: Path
) -> None:
    path = tmp_path / "pr-plan.json"
    save(example, path, "--offline")
    csv = example.parent / "example" / "data" / "residents_district_monthly.csv"
    csv.write_text(
        csv.read_text().replace("2021-01-01,EX01-01,35659,", "2021-01-01,EX01-01,35660,")
    )
    code, output = run("apply", str(example), "--reviewed", str(path), env=env_for(example))
    assert (code, output.splitlines()[-1]) == (
        1, f"error: {path}: the reviewed plan differs from a fresh plan: change 70 (+ dataset "
        "residents.residents srid=2 trid=2 2021-01-01 00:00:00): dataset.digest is "
        '"1:ac6f0a85577e69390f7ec9fa6420c41eca0f17e78a1f95ab0d52a704b990c6da" in the reviewed '
        'plan, "1:e335e8ce77d87ad263179c40a5d1cfdd13699aac5231ab3179160400be5390d2" in a fresh '
        "plan; plan again",
    )  # fmt: skip
    code, output = run("plan", str(example), "--detailed-exitcode", env=env_for(example))
    assert code == 2 and "Plan: 96 to create" in output


def test_a_reviewed_plan_is_verified_too(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, _, document = planned
    path = tmp_path / "pr-plan.json"
    write(path, {**document, "changes": []})
    code, output = run("apply", str(manifest), "--reviewed", str(path), env=env_for(manifest))
    assert (code, output) == (
        1, f"error: {path}: its digest does not match its content: it was changed after "
        "`plan --out` wrote it; plan again\n",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{plan}", "--reviewed", "{plan}"],
         "--reviewed needs a manifest to plan, not a saved plan: "
         "`flowkit-loader apply MANIFEST --reviewed PLAN`"),
        (["{manifest}", "--reviewed", "{plan}", "--only", "category=residents"],
         "--target, --only and --verify come from the saved plan; they cannot be changed"),
    ],
)  # fmt: skip
def test_reviewed_refuses_what_it_cannot_compare(
    planned: tuple[Path, Path, Document], arguments: list[str], message: str
) -> None:
    manifest, path, _ = planned
    filled = [a.format(plan=path, manifest=manifest) for a in arguments]
    assert run("apply", *filled, env=env_for(manifest)) == (1, f"error: {message}\n")


def test_a_reviewed_plan_for_another_target_is_refused(
    planned: tuple[Path, Path, Document], tmp_path: Path
) -> None:
    manifest, path, document = planned
    other = env_for(manifest) | {"FLOWKIT_EXAMPLE_DB": str(tmp_path / "elsewhere.db")}
    code, output = run("apply", str(manifest), "--reviewed", str(path), env=other)
    url = document["target_url"]
    assert (code, output.splitlines()[-1]) == (
        1, f"error: {path}: the reviewed plan was made for {url}, not local:{tmp_path}/elsewhere.db"
    )  # fmt: skip
