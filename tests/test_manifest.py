"""The manifest model: targets, credentials, per-target ids, unit codes, access rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from loader.access import grants
from loader.model import ManifestError, Role
from loader.validation import load_manifest, validate
from tests.helpers import write_manifest

RESIDENTS = "month,pcod,residents,residents_perKm2,arrived\n" + "".join(
    f"2021-{m:02d}-01,EX01-01,{m},1,1\n" for m in range(1, 7)
)
REMOTE = """\
  prod:
    url: https://flowkit.example.org/v1
    auth: {{token_url: "https://auth.example.org/oauth/token", audience: api}}
    ids:
      spatial_resolutions: {{District: 7}}
    credentials:
      all: {{client_id: "${{FKL_TEST_ID}}", client_secret: {secret}}}
      reader: {{token: "${{FKL_TEST_READER_TOKEN}}"}}
"""


def with_target(directory: Path, secret: str = '"${FKL_TEST_SECRET}"') -> Path:
    manifest = write_manifest(directory, {"residents.csv": RESIDENTS})
    text = manifest.read_text().replace(
        "  local: {url: 'local:state/test.db'}\n",
        "  local: {url: 'local:state/test.db'}\n" + REMOTE.format(secret=secret),
    )
    manifest.write_text(text + "default_target: local\n")
    return manifest


def test_targets_credentials_and_per_target_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FKL_TEST_ID", "client-1")
    manifest = load_manifest(with_target(tmp_path), environ={"FKL_TEST_ID": "client-1"})
    local, prod = manifest.target("local"), manifest.target()
    assert prod is local and local.is_local
    assert local.local_path == str(tmp_path / "state" / "test.db")
    assert local.state == str(tmp_path / "manifest.local.state.json")
    remote = manifest.target("prod")
    admin = remote.credentials[Role.ADMIN]
    assert (admin.kind, admin.client_id, admin.secret_env) == (
        "client_credentials",
        "client-1",
        "FKL_TEST_SECRET",
    )
    assert admin.token_url == "https://auth.example.org/oauth/token" and admin.audience == "api"
    assert remote.credentials[Role.UPDATER] == admin
    assert remote.credentials[Role.READER].kind == "token"
    assert manifest.setups["local"].spatial["District"].srid == 2
    assert manifest.setups["prod"].spatial["District"].srid == 7
    with pytest.raises(ManifestError, match="no target named 'nope'"):
        manifest.target("nope")


def test_a_literal_secret_is_refused_and_never_shown(tmp_path: Path) -> None:
    report = validate(with_target(tmp_path, secret="hunter2-literal"), data=False)
    messages = [str(p) for p in report.errors]
    assert len(messages) == 1
    assert messages[0].endswith(
        "literal secret in 'client_secret': write it as ${ENV_VAR}; "
        "secrets come only from the environment"
    )
    assert "hunter2" not in "\n".join(str(p) for p in report.problems)


def test_an_id_reference_that_differs_between_targets_must_be_a_label(tmp_path: Path) -> None:
    manifest = with_target(tmp_path)
    manifest.write_text(
        manifest.read_text().replace("spatial_resolution: District", "spatial_resolution: 2")
    )
    report = validate(manifest, data=False)
    assert [p.message for p in report.errors] == [
        "spatial resolution 2 is not the same resolution in every target "
        "(local: District, prod: none); name it by label"
    ]


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    manifest = with_target(tmp_path)
    text = manifest.read_text()
    manifest.write_text(text.replace("https://flowkit.example.org/v1", "http://10.1.2.3/v1"))
    [error] = validate(manifest, data=False).errors
    assert "plain http is allowed only on loopback" in error.message
    manifest.write_text(text.replace("https://flowkit.example.org/v1", "http://127.0.0.1:8000/v1"))
    assert validate(manifest, data=False).ok


def test_access_rules_resolve_as_query_does(tmp_path: Path) -> None:
    access = (
        "access:\n"
        "  read:free_data:\n"
        "    - {indicator: residents.residents, temporal_resolution: Month,"
        " start: '2021-02', duration: 3}\n"
        "  read:premium_data:\n"
        "    - {indicator: 'residents.*', temporal_resolution: Month, start: '2021-05'}\n"
        "    - {indicator: residents.arrived, temporal_resolution: Month, until: '2021-01'}\n"
    )
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=access)
    report = validate(manifest)
    assert report.ok, report.problems
    assert report.manifest is not None
    chosen = grants(report.manifest.access, [s.key for s in report.summaries],
                    report.manifest.setup())  # fmt: skip
    free = sorted((k.indicator_id, k.dt[:7]) for k in chosen["read:free_data"])
    assert free == [("residents.residents", m) for m in ("2021-02", "2021-03", "2021-04")]
    premium = sorted((k.indicator_id, k.dt[:7]) for k in chosen["read:premium_data"])
    assert premium == [
        ("residents.arrived", "2021-01"),
        ("residents.arrived", "2021-05"),
        ("residents.arrived", "2021-06"),
        ("residents.residents", "2021-05"),
        ("residents.residents", "2021-06"),
        ("residents.residents_perKm2", "2021-05"),
        ("residents.residents_perKm2", "2021-06"),
    ]


def test_unit_property_is_inferred_or_asked_for(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    loaded = load_manifest(manifest)
    district = loaded.setup().spatial["District"]
    assert district.unit_property == "ADM2_PCODE"
    assert district.unit_codes is not None and "EX01-01" in district.unit_codes
    text = manifest.read_text().replace(
        "revision: r1\n", "revision: r1\nunit_properties: {District: ADM1_PCODE}\n"
    )
    manifest.write_text(text)
    report = validate(manifest)
    assert report.errors[0].message == (
        "unknown spatial unit 'EX01-01' in column 'pcod': not among the ADM1_PCODE codes of "
        "'District' (and 5 more)"
    )


def test_an_inline_setup_config_is_checked_like_a_file(tmp_path: Path) -> None:
    import json

    from tests.helpers import EXAMPLE_CONFIG

    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    config = json.loads(EXAMPLE_CONFIG.read_text())
    inline = json.dumps(config)  # JSON is YAML: the config inline, as one flow mapping
    text = manifest.read_text().replace("setup: config.json", f"setup: {inline}")
    manifest.write_text(text)
    report = validate(manifest)
    assert report.ok, report.problems
    assert len(report.summaries) == 18
    del config["categories"][0]["type"]
    manifest.write_text(text.replace(f"setup: {inline}", f"setup: {json.dumps(config)}"))
    [problem] = validate(manifest, data=False).errors
    assert problem.message == "missing required key 'type' in setup.categories.0"
    assert problem.position.line == 4  # the inline config's line
