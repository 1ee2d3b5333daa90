"""Manifests the suites share: the example copied with its data, the example and the
upstream manifest aimed at a server, and a small manifest whose remote target uses one
client for every role."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT, UPSTREAM_DATA
from tests.helpers import write_manifest
from tests.serving import AUDIENCE, SECRET_ENV

UPSTREAM_MANIFEST = ROOT / "tests" / "data" / "upstream" / "manifest.yaml"


def copy_example(directory: Path) -> Path:
    """A private copy of the example manifest and its data, its database beside it."""
    shutil.copytree(ROOT / "manifests", directory / "manifests",
                    ignore=shutil.ignore_patterns(".flowkit"))  # fmt: skip
    return directory / "manifests" / "example.yaml"


def env_for(manifest: Path) -> dict[str, str]:
    return {"FLOWKIT_EXAMPLE_DB": str(manifest.parent / "example.db")}


def example_manifest(directory: Path, base: str) -> Path:
    """The example manifest with a target aimed at `base` (its data copied beside it)."""
    shutil.copytree(ROOT / "manifests" / "example", directory / "example")
    text = (ROOT / "manifests" / "example.yaml").read_text()
    secret = f"client_secret: '${{{SECRET_ENV}}}'"
    target = (
        "targets:\n  served:\n"
        f"    url: {base}/v1\n"
        f"    auth: {{token_url: '{base}/oauth/token', audience: "
        "'https://flowkit-ui-backend.local'}\n"
        f"    credentials:\n      all: {{client_id: dev-admin, {secret}}}\n"
        "default_target: served\n"
    )
    body = text[text.index("# The backend's own config format") :]
    manifest = directory / "example.yaml"
    manifest.write_text("version: 1\n" + target + body)
    return manifest


def upstream_manifest(directory: Path, base: str, readers: bool = False) -> Path:
    """The upstream manifest aimed at a server, its data read in place."""
    text = UPSTREAM_MANIFEST.read_text().replace(
        "../../../../shared/reference/upstream-data", str(UPSTREAM_DATA)
    )
    secret = f"client_secret: '${{{SECRET_ENV}}}'"
    scopes = (
        "      scopes:\n"
        f"        read:free_data: {{client_id: dev-reader, {secret}}}\n"
        f"        read:premium_data: {{client_id: dev-premium, {secret}}}\n"
        if readers else ""
    )  # fmt: skip
    target = (
        "targets:\n"
        "  served:\n"
        f"    url: {base}/v1\n"
        f"    state: {directory / 'served.state.json'}\n"
        f"    auth: {{token_url: '{base}/oauth/token', audience: '{AUDIENCE}'}}\n"
        "    credentials:\n"
        f"      all: {{client_id: dev-admin, {secret}}}\n"
        f"{scopes}"
    )
    start = text.index("targets:")
    end = text.index("setup:")
    manifest = directory / "upstream.yaml"
    manifest.write_text(text[:start] + target + text[end:])
    return manifest


RESIDENTS = "month,pcod,residents,residents_perKm2,arrived\n2021-01-01,EX01-01,1,1,1\n"


def remote_manifest(directory: Path, base: str, client: str, credentials: str = "") -> Path:
    """A manifest whose `remote` target uses `client` for every role; `credentials` adds
    lines to its credentials section (a role of its own, `scopes`)."""
    manifest = write_manifest(directory, {"residents.csv": RESIDENTS})
    target = (
        "  remote:\n"
        f"    url: {base}/v1\n"
        f"    auth: {{token_url: '{base}/oauth/token', audience: '{AUDIENCE}'}}\n"
        f"    credentials:\n"
        f"{credentials}"
        f"      all: {{client_id: {client}, client_secret: '${{{SECRET_ENV}}}'}}\n"
    )
    text = manifest.read_text().replace("targets:\n", "targets:\n" + target)
    manifest.write_text(text + "default_target: remote\n")
    return manifest
