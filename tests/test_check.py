"""`flowkit-loader check`: a target answers and its credentials can do their work."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.cli import cli
from tests.helpers import write_manifest
from tests.serving import AUDIENCE, SECRET, SECRET_ENV, serving

RESIDENTS = "month,pcod,residents,residents_perKm2,arrived\n2021-01-01,EX01-01,1,1,1\n"


def remote_manifest(directory: Path, base: str, client: str) -> Path:
    manifest = write_manifest(directory, {"residents.csv": RESIDENTS})
    target = (
        "  remote:\n"
        f"    url: {base}/v1\n"
        f"    auth: {{token_url: '{base}/oauth/token', audience: '{AUDIENCE}'}}\n"
        f"    credentials:\n"
        f"      all: {{client_id: {client}, client_secret: '${{{SECRET_ENV}}}'}}\n"
    )
    text = manifest.read_text().replace("targets:\n", "targets:\n" + target)
    manifest.write_text(text + "default_target: remote\n")
    return manifest


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={SECRET_ENV: SECRET})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_a_remote_target_and_its_credentials(tmp_path: Path) -> None:
    with serving(tmp_path / "serve.db") as base:
        code, output = run("check", str(remote_manifest(tmp_path, base, "dev-admin")))
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == f"remote: {base}/v1 is ready"
    assert "  admin: dev-admin@clients, scopes admin profile read:free_data" in lines[1]
    assert SECRET not in output and "eyJ" not in output


def test_a_credential_without_the_scope_its_role_needs(tmp_path: Path) -> None:
    with serving(tmp_path / "serve.db") as base:
        code, output = run("check", str(remote_manifest(tmp_path, base, "dev-updater")))
    assert code == 1
    assert output.strip() == (
        "error: preflight (admin): 401 the admin credential's token lacks the 'admin' scope "
        "(it has: write:data)"
    )


def test_wait_ready_gives_up_with_a_clear_message(tmp_path: Path) -> None:
    manifest = remote_manifest(tmp_path, "http://127.0.0.1:9", "dev-admin")
    code, output = run("check", str(manifest), "--wait-ready", "0.5")
    assert code == 1
    assert output.startswith("error: GET /heartbeat: 0 not ready after 0 s: ConnectError")


def test_a_local_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    code, output = run("check", str(manifest))
    assert code == 0
    assert output == (
        f"local: embedded backend at {tmp_path / 'state' / 'test.db'}: 0 languages, "
        "0 data providers\n"
    )


def test_an_invalid_manifest_is_one_line(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    manifest.write_text(manifest.read_text().replace("version: 1", "version: 2"))
    code, output = run("check", str(manifest))
    assert code == 1
    assert output == (
        f"error: {manifest}:1:10: unsupported manifest version: this loader reads version 1, "
        "not 2\n"
    )
    # Several problems: the first, how many more, and where to see them all.
    manifest.write_text(manifest.read_text().replace("revision: r1", "revision: [r1]"))
    code, output = run("check", str(manifest))
    assert code == 1 and len(output.splitlines()) == 1
    assert "(and 1 more problems; `flowkit-loader validate " in output


def test_the_real_command_exits_1_with_one_line_on_stderr(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    done = subprocess.run([sys.executable, "-m", "loader", "check", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_reader_that_cannot_see_every_dataset_is_refused(tmp_path: Path) -> None:
    """Refresh must see every dataset: a free-data reader would make premium ones look
    deleted, and every apply would rewrite them."""
    with serving(tmp_path / "serve.db") as base:
        manifest = remote_manifest(tmp_path, base, "dev-admin")
        text = manifest.read_text().replace(
            "      all: {client_id: dev-admin,",
            f"      reader: {{client_id: dev-reader, client_secret: '${{{SECRET_ENV}}}'}}\n"
            "      all: {client_id: dev-admin,",
        )
        manifest.write_text(text)
        code, output = run("plan", str(manifest))
    assert code == 1
    assert output.strip() == (
        "error: the reader credential's token cannot see every dataset (its permissions: "
        "read:free_data; refresh needs the admin permission): give the reader role a token "
        "with it, or leave credentials.reader out to read with the admin's"
    )
