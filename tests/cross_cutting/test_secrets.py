"""Canary: a secret, the access tokens used in a run and the plan-signing key never
appear in output, logs at the highest verbosity (httpx and httpcore debug logging on),
error messages, reprs or files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from loader.backends.auth import AuthError, TokenProvider
from loader.backends.remote import RemoteBackend
from loader.model import BackendError, Credential, Role
from tests.helpers import example
from tests.serving import SECRET, SECRET_ENV, credential, serving


def test_secrets_and_tokens_never_leak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    config, datasets = example()
    seen: list[str] = []
    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        providers = {
            role: TokenProvider(credential(base, "dev-admin"), environ={SECRET_ENV: SECRET})
            for role in Role
        }
        backend = RemoteBackend(f"{base}/v1", providers, date_formats={2: "%Y-%m", 4: "%Y-%m-%d"})
        backend.replace_setup(config)
        for dataset in datasets[:5]:
            backend.create_dataset(dataset)
        tokens = {provider.current().value for provider in providers.values()}
        seen += [repr(backend), *map(repr, providers.values()),
                 *(repr(p.current()) for p in providers.values())]  # fmt: skip
        wrong = TokenProvider(credential(base, "dev-admin"), environ={SECRET_ENV: "x" + SECRET})
        with pytest.raises(AuthError) as refused:
            wrong.current()
        seen.append(str(refused.value))
        static = TokenProvider(Credential("token", "TOKEN_ENV"),
                               environ={"TOKEN_ENV": next(iter(tokens))})  # fmt: skip
        seen.append(repr(static.current()))
        reader = RemoteBackend(f"{base}/v1", dict.fromkeys(Role, static))
        with pytest.raises(BackendError) as failed:  # an error message, sent without a token
            reader.expect(reader.http.post(f"{base}/v1/data", content=b"{"), 201)
        seen.append(str(failed.value))
        backend.close()
    captured = capsys.readouterr()
    everything = "\n".join([*seen, caplog.text, captured.out, captured.err])
    assert "HTTP Request: POST" in caplog.text  # the debug logging really was on
    for secret in (SECRET, *tokens):
        assert secret not in everything
    assert "eyJ" not in everything  # no JWT at all


def test_plans_state_records_journals_and_locks_hold_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything plan and apply write to disk or print, read back and searched; the plan
    signed with FLOWKIT_PLAN_KEY, shown, refused for another key, and applied."""
    from click.testing import CliRunner

    from loader import applying
    from loader.cli import cli
    from loader.planfile import KEY_ENV
    from tests.manifests import remote_manifest

    caplog.set_level(logging.DEBUG)
    files: dict[str, str] = {}
    key = "plan-signing-canary-" + SECRET[::-1]
    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        manifest = remote_manifest(tmp_path, base, "dev-admin")
        runner = CliRunner()
        arguments = ["plan", str(manifest), "--out", str(tmp_path / "p.json"), "-f", "markdown"]
        planned = runner.invoke(cli, arguments, env={SECRET_ENV: SECRET, KEY_ENV: key})
        assert planned.exit_code == 0, planned.output
        outputs = [planned.output]
        for env in ({KEY_ENV: key}, {KEY_ENV: "x" + key}, {KEY_ENV: None}):
            shown = runner.invoke(cli, ["show", str(tmp_path / "p.json")], env=env)
            assert shown.exit_code == (0 if env[KEY_ENV] == key else 1), shown.output
            outputs.append(shown.output)
        state = Path(manifest.parent / "manifest.remote.state.json")

        def snapshot(_: object) -> None:  # mid-apply: the journal and the lock exist
            for path in (Path(f"{state}.journal"), Path(f"{state}.lock")):
                if path.exists():
                    files[path.name] = path.read_text()

        applied = applying.apply(tmp_path / "p.json", environ={SECRET_ENV: SECRET, KEY_ENV: key},
                                progress=snapshot)  # fmt: skip
        assert applied.result.ok and applied.result.outcomes
        outputs.append(repr(applied))
        shown = runner.invoke(cli, ["status", str(manifest)], env={SECRET_ENV: SECRET})
        tokens = {
            TokenProvider(credential(base, "dev-admin"), environ={SECRET_ENV: SECRET})
            .current()
            .value
        }
    files["plan"] = (tmp_path / "p.json").read_text()
    files["state"] = state.read_text()
    assert {f"{state.name}.journal", f"{state.name}.lock"} <= set(files)
    assert '"who": "dev-admin@clients"' in files["state"]  # the subject, not the token
    everything = "\n".join([*files.values(), *outputs, shown.output, caplog.text])
    assert '"signature": "' in files["plan"]
    for secret in (SECRET, *tokens, key, key.encode().hex()):
        assert secret not in everything
    assert "eyJ" not in everything


def test_a_file_that_fails_to_parse_is_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data file full of secrets (as /proc/self/environ would be, if it were read):
    what validate prints quotes at most a short, cut excerpt of any header or cell."""
    from click.testing import CliRunner

    from loader.cli import cli
    from tests.helpers import write_manifest

    monkeypatch.chdir(tmp_path)
    secret = "AWS_SECRET_ACCESS_KEY=" + "s3cr3t" * 20
    texts = {
        "a header of secrets": f"month,pcod,{secret}\n2021-01-01,EX01-01,1\n",
        "a cell of secrets": f"month,pcod,residents\n2021-01-01,EX01-01,{secret}\n",
        "a unit of secrets": f"month,pcod,residents\n2021-01-01,{secret},1\n",
        "a date of secrets": f"month,pcod,residents\n{secret},EX01-01,1\n",
        "a ragged row of secrets": f"month,pcod,residents\n2021-01-01,EX01-01,1,{secret}\n",
        "NUL-separated, as environ is": "\0".join([secret, "PATH=/bin", secret]) + "\n",
    }
    for name, text in texts.items():
        manifest = write_manifest(tmp_path, {"residents.csv": text})
        result = CliRunner().invoke(cli, ["validate", str(manifest)])
        assert result.exit_code == 1, (name, result.output)
        assert "s3cr3t" * 10 not in result.output, (name, result.output)
