"""loader/targets.py: a manifest's targets section -> Target models, and its problems."""

from __future__ import annotations

from pathlib import Path

from loader.fileroot import FileRoot
from loader.manifestpart import ManifestPart
from loader.model import Credential, Role, Target
from loader.targets import TargetReader, is_loopback
from loader.yamlsrc import load_yaml


def read(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> TargetReader:
    document = load_yaml(text, "m.yaml", environ or {})
    part = ManifestPart(document, tmp_path, frozenset(), [])
    return TargetReader(part, FileRoot.of(tmp_path, None))


def targets_of(reader: TargetReader) -> dict[str, Target]:
    return reader.targets(reader.doc.value.get("targets"))


def test_a_local_target_resolves_its_path_and_its_default_state_record(tmp_path: Path) -> None:
    reader = read(tmp_path, "targets:\n  dev:\n    url: local:db/dev.sqlite\n")
    found = targets_of(reader)["dev"]
    assert found.url == f"local:{tmp_path / 'db' / 'dev.sqlite'}"
    assert found.state == str(tmp_path / "m.dev.state.json")  # beside the manifest
    assert found.credentials == {} and reader.problems == []


def test_credentials_per_role_fall_back_to_all_and_the_reader_to_admin(tmp_path: Path) -> None:
    text = """\
targets:
  prod:
    url: https://backend.example.org/v1
    auth: {token_url: https://auth.example.org/token, audience: flowkit}
    credentials:
      all: {client_id: loader, client_secret: "${SECRET}"}
      updater: {token: "${UPDATER_TOKEN}"}
      scopes:
        read:free_data: {client_id: free, client_secret: "${FREE}"}
"""
    reader = read(tmp_path, text, {"SECRET": "s", "UPDATER_TOKEN": "t", "FREE": "f"})
    found = targets_of(reader)["prod"]
    shared = Credential("client_credentials", "SECRET", "loader",
                        "https://auth.example.org/token", "flowkit")  # fmt: skip
    assert found.credentials == {
        Role.ADMIN: shared,
        Role.UPDATER: Credential("token", "UPDATER_TOKEN"),
        Role.READER: shared,
    }
    assert found.scope_readers["read:free_data"].client_id == "free"
    assert reader.problems == []


def test_a_literal_secret_is_refused_where_it_is_written(tmp_path: Path) -> None:
    text = """\
targets:
  prod:
    url: https://backend.example.org/v1
    credentials:
      all: {token: not-a-reference}
"""
    reader = read(tmp_path, text)
    targets_of(reader)
    [problem] = reader.problems
    assert (problem.position.line, problem.position.column) == (5, 20)
    assert problem.message.startswith("literal secret in 'token': write it as ${ENV_VAR}")
    assert "not-a-reference" not in problem.message  # the secret is never echoed


def test_plain_http_is_refused_off_loopback_and_roles_without_credentials_named(
    tmp_path: Path,
) -> None:
    reader = read(tmp_path, "targets:\n  prod:\n    url: http://backend.example.org/v1\n")
    targets_of(reader)
    messages = [p.message for p in reader.problems]
    assert messages == [
        "plain http is allowed only on loopback (tokens would travel unencrypted): use https",
        "target 'prod' has no credential for the admin and updater roles: set "
        "credentials.admin and credentials.updater, or credentials.all",
    ]


def test_an_unknown_scheme_names_the_forms_served(tmp_path: Path) -> None:
    reader = read(tmp_path, "targets:\n  odd:\n    url: ftp://example.org/v1\n")
    targets_of(reader)
    assert reader.problems[0].message.startswith("target url must be ")
    assert reader.problems[0].message.endswith('not "ftp://example.org/v1"')


def test_is_loopback_reads_addresses_and_localhost_without_asking_dns() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.0.2.1", "loopback.example.org"]))
