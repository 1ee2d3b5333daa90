"""`flowkit-loader check`: every credential and the state store, tested the way plan and
apply use them, one line per thing checked, exit 1 when any fails; against a real `serve`
on loopback with real JWTs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from loader.cli import cli
from tests.conftest import ROOT
from tests.helpers import write_manifest
from tests.manifests import RESIDENTS, remote_manifest
from tests.serving import AUDIENCE, SECRET, SECRET_ENV, serving
from tests.statecases import CASES, expectations, run_command, snapshot, workspace

ADMIN_SCOPES = "admin profile read:free_data read:premium_data write:data"
WRITABLE = "writable and lockable"
NO_RECORD = f"no record yet (the first apply writes it); {WRITABLE}"
ELSEWHERE = "or give another place with --state or the target's state:"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module: check writes nothing to it."""
    with serving(tmp_path_factory.mktemp("check") / "serve.db") as url:
        yield url


def client(role: str, name: str) -> str:
    return f"      {role}: {{client_id: {name}, client_secret: '${{{SECRET_ENV}}}'}}\n"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, list(args), env={SECRET_ENV: SECRET, **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


def ok(subject: str, scopes: str = ADMIN_SCOPES, sees: str = "admin") -> str:
    return f"{subject}, scopes {scopes}, sees {sees}"


def test_a_remote_target_its_credentials_and_its_state(base: str, tmp_path: Path) -> None:
    manifest = remote_manifest(tmp_path, base, "dev-admin")
    before = snapshot(tmp_path)
    code, lines = run("check", str(manifest))
    assert (code, lines) == (0, [
        f"remote: {base}/v1 is ready",
        f"  admin: {ok('dev-admin@clients')}",
        f"  updater: {ok('dev-admin@clients')}",
        f"  reader: {ok('dev-admin@clients')}",
        f"  state: {tmp_path / 'manifest.remote.state.json'}: {NO_RECORD}",
    ])  # fmt: skip
    assert snapshot(tmp_path) == before  # the probe and its lock are gone again
    assert SECRET not in "\n".join(lines) and "eyJ" not in "\n".join(lines)


def test_each_role_without_the_scope_apply_needs_is_a_line(base: str, tmp_path: Path) -> None:
    code, lines = run("check", str(remote_manifest(tmp_path, base, "dev-updater")))
    assert (code, lines[1:4]) == (1, [
        "  admin: error: dev-updater@clients: the admin credential's token lacks the 'admin' "
        "scope (it has: write:data)",
        f"  updater: {ok('dev-updater@clients', 'write:data', 'nothing')}",
        "  reader: error: dev-updater@clients: the reader credential's token lacks the "
        "'read:free_data' scope (it has: write:data)",
    ])  # fmt: skip
    assert lines[4].endswith(NO_RECORD)  # the other checks still run


def test_a_reader_that_cannot_see_every_dataset_fails_check_as_it_fails_plan(
    base: str, tmp_path: Path
) -> None:
    """Refresh must see every dataset: a free-data reader would make premium ones look
    deleted, and every apply would rewrite them. Check says what plan says."""
    manifest = remote_manifest(tmp_path, base, "dev-admin", client("reader", "dev-reader"))
    code, output = run("plan", str(manifest))
    refusal = (
        "error: the reader credential's token cannot see every dataset (its permissions: "
        "read:free_data; refresh needs the admin permission): give the reader role a token "
        "with it, or leave credentials.reader out to read with the admin's"
    )
    assert (code, output) == (1, [refusal])
    code, lines = run("check", str(manifest))
    assert code == 1
    assert lines[3] == f"  reader: error: dev-reader@clients: {refusal.removeprefix('error: ')}"
    assert lines[1] == f"  admin: {ok('dev-admin@clients')}"


PREMIUM = "read:premium_data"


@pytest.mark.parametrize(
    ("reader", "expected"),
    [
        ("dev-premium", ok("dev-premium@clients", f"read:free_data {PREMIUM}", PREMIUM)),
        ("dev-reader", f"error: dev-reader@clients: its token cannot see what is granted to "
         f"{PREMIUM} (its permissions: read:free_data): every grant would look removed and "
         f"every plan would grant it again; give this credential a token with the {PREMIUM} "
         "permission"),
        ("dev-admin", f"error: dev-admin@clients: its token has the admin permission, so it "
         f"sees every dataset and a grant removed from {PREMIUM} would never show: give this "
         f"credential a token without it that holds {PREMIUM}"),
        ("dev-updater", "error: dev-updater@clients: its token lacks the 'read:free_data' "
         "scope every read needs (it has: write:data)"),
    ],
    ids=["sees-its-scope", "sees-another-scope", "sees-everything", "cannot-read"],
)  # fmt: skip
def test_a_scope_reader(base: str, tmp_path: Path, reader: str, expected: str) -> None:
    """`credentials.scopes` readers show which grants still hold: each must read, see
    its scope's grants, and not see everything."""
    scopes = f"      scopes:\n  {client(PREMIUM, reader)}"
    code, lines = run("check", str(remote_manifest(tmp_path, base, "dev-admin", scopes)))
    assert lines[4] == f"  scope {PREMIUM}: {expected}"
    assert code == (0 if reader == "dev-premium" else 1)
    assert len(lines) == 6 and lines[5].startswith("  state: ")


def test_a_token_the_server_does_not_accept(base: str, tmp_path: Path) -> None:
    """Claims are read, not verified (only the server can): one live read with the
    reader's token shows that the server takes it. Here a token signed by another key,
    whose claims are all right."""
    now = int(time.time())
    claims = {"sub": "forged@clients", "aud": AUDIENCE, "iat": now, "exp": now + 3600,
              "scope": "read:free_data", "permissions": ["admin"]}  # fmt: skip
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256")
    reader = "      reader: {token: '${FORGED_TOKEN}'}\n"
    manifest = remote_manifest(tmp_path, base, "dev-admin", reader)
    code, lines = run("check", str(manifest), env={"FORGED_TOKEN": forged})
    assert code == 1
    # What follows (advice on the static token) is the remote client's to word.
    assert lines[3].startswith(
        "  reader: error: forged@clients: GET /categories/flowkit-loader-check: 401 Could not "
        "decode token"
    )
    assert forged not in "\n".join(lines)


def test_a_target_that_does_not_answer_still_checks_the_rest(tmp_path: Path) -> None:
    manifest = remote_manifest(tmp_path, "http://127.0.0.1:9", "dev-admin")
    code, lines = run("check", str(manifest), "--wait-ready", "0.5")
    assert code == 1
    assert lines[0].startswith("remote: error: GET /heartbeat: ")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  admin", "  updater", "  reader", "  state"
    ]  # fmt: skip
    assert all(" error: " in line for line in lines[1:4])
    assert lines[4] == f"  state: {tmp_path / 'manifest.remote.state.json'}: {NO_RECORD}"


def test_a_local_target_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    before = snapshot(tmp_path)
    code, lines = run("check", str(manifest))
    assert (code, lines) == (0, [
        f"local: embedded backend at {tmp_path / 'state' / 'test.db'}: no database yet (the "
        "first apply creates it)",
        f"  state: {tmp_path / 'manifest.local.state.json'}: {NO_RECORD}",
    ])  # fmt: skip
    assert snapshot(tmp_path) == before


def test_a_local_target_after_an_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    code, output = run("apply", str(manifest), "--yes", "-q")
    assert code == 0, output
    state = tmp_path / "manifest.local.state.json"
    code, lines = run("check", str(manifest))
    assert (code, lines) == (0, [
        f"local: embedded backend at {tmp_path / 'state' / 'test.db'}: 2 languages, "
        "1 data provider",
        f"  state: {state}: serial 1, 3 datasets, 14 config entities; {WRITABLE}",
    ])  # fmt: skip
    # A record of another target: plan and apply refuse it, and so does check.
    record = json.loads(state.read_text())
    record["target_url"] = "https://elsewhere.example.org/v1"
    state.write_text(json.dumps(record))
    code, planned = run("plan", str(manifest))
    assert code == 1 and len(planned) == 1
    code, lines = run("check", str(manifest))
    assert (code, lines[1]) == (1, (
        f"  state: {planned[0]} (plan and apply refuse it too)"
    ))  # fmt: skip
    assert planned[0] == (
        f"error: {state}: this state record was applied to https://elsewhere.example.org/v1, "
        f"not local:{tmp_path / 'state' / 'test.db'}: give each target its own state (if it is "
        "the same backend at a new address, set target_url in the record)"
    )


def test_a_state_store_that_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file where the state's folder should be: nothing can be created in it, whoever
    asks (tests run as root, whom file modes do not stop). Plan reads no record there and
    passes; apply fails at its lock; check says so first."""
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder\n")
    state = blocked / "prod.state.json"
    before = snapshot(tmp_path)
    code, lines = run("check", str(manifest), "--state", str(state))
    assert (code, lines[1]) == (1, (
        f"  state: error: {state}.check-probe: cannot write: {blocked} is not a directory; "
        f"apply could not write its record there: fix that, {ELSEWHERE}"
    ))  # fmt: skip
    assert snapshot(tmp_path) == before
    assert run("plan", str(manifest), "--state", str(state))[0] == 0
    code, output = run("apply", str(manifest), "--yes", "--state", str(state))
    assert (code, output) == (1, [
        f"error: {state}.lock: cannot write: {blocked} is not a directory"
    ])  # fmt: skip


def test_the_folders_the_probe_makes_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    state = tmp_path / "new" / "deeper" / "prod.state.json"
    before = snapshot(tmp_path)
    code, lines = run("check", str(manifest), "--state", str(state))
    assert (code, lines[1]) == (0, f"  state: {state}: {NO_RECORD}")
    assert snapshot(tmp_path) == before


def test_a_probe_a_killed_check_left_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    before = snapshot(tmp_path)
    probe = tmp_path / "manifest.local.state.json.check-probe"
    probe.write_bytes(b"\x00half a probe")
    Path(f"{probe}.lock").write_bytes(b"")
    code, lines = run("check", str(manifest))
    assert (code, lines[1]) == (
        0,
        f"  state: {tmp_path / 'manifest.local.state.json'}: {NO_RECORD}",
    )
    assert snapshot(tmp_path) == before


def test_a_state_store_given_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsspec store (here fsspec's in-memory one) is probed through the same storage
    as apply's, and left as it was."""
    import fsspec

    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    state = "memory://check-bucket/prod.state.json"
    code, lines = run("check", str(manifest), "--state", state)
    assert (code, lines[1]) == (0, f"  state: {state}: {NO_RECORD}")
    assert fsspec.filesystem("memory").find("/check-bucket") == []


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_check_refuses_each_broken_state_as_apply_does(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The corpus of broken state files (tests/data/state-invalid/): check fails exactly
    where apply fails, in apply's words, and changes nothing on disk."""
    directory = tmp_path.resolve()
    manifest = workspace(case, directory)
    monkeypatch.chdir(directory)
    before = snapshot(directory)
    result = run_command("check", manifest)
    assert snapshot(directory) == before
    found = {e.command.split()[0]: e for e in expectations(case)}
    applied, planned = found["apply"], found["plan"]
    assert result.exit_code == applied.exit_code == 1
    lines = result.stdout.replace(str(directory), "$DIR").splitlines()
    assert len(lines) == 2
    refusal = applied.stderr[0].removeprefix("error: ")
    if case.name == "state-folder-unwritable":  # the probe meets it before the lock does
        refusal = refusal.replace("record.json.lock:", "record.json.check-probe:")
        advice = f"; apply could not write its record there: fix that, {ELSEWHERE}"
    elif planned.exit_code == 1:
        advice = " (plan and apply refuse it too)"
    else:  # a lock: plan never takes it
        advice = " (apply refuses it too)"
    assert lines[1] == f"  state: error: {refusal}{advice}"


def test_an_invalid_manifest_is_one_line(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    manifest.write_text(manifest.read_text().replace("version: 1", "version: 2"))
    code, lines = run("check", str(manifest))
    assert (code, lines) == (1, [
        f"error: {manifest}:1:10: unsupported manifest version: this loader reads version 1, "
        "not 2"
    ])  # fmt: skip
    # Several problems: the first, how many more, and where to see them all.
    manifest.write_text(manifest.read_text().replace("revision: r1", "revision: [r1]"))
    code, lines = run("check", str(manifest))
    assert code == 1 and len(lines) == 1
    assert "(and 1 more problems; `flowkit-loader validate " in lines[0]


def test_the_real_command_exits_1_with_one_line_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    done = subprocess.run([sys.executable, "-m", "loader", "check", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
