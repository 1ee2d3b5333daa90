"""Manifests the suites share: the example copied with its data, the example and the
upstream manifest aimed at a server, a small manifest whose remote target uses one
client for every role, and a small embedded deployment filled dataset by dataset (what
export reads back)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from loader.backends.store import Incoming, Store
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


# A small deployment, filled through the store dataset by dataset: what export reads.

CONFIG: dict[str, list[dict[str, Any]]] = {
    "languages": [{"lid": 1, "code": "en", "name": "English", "flag": "", "default": True}],
    "data_providers": [{"dpid": 1, "name": "Acme", "logo": "https://example.org/l.svg",
                        "url": "https://example.org"}],
    "categories": [{"category_id": "residents", "type": "single_location", "order": 1,
                    "flowgeek_url": "https://example.org", "label": "Residents",
                    "description": "People."}],
    "indicators": [{"category_id": "residents", "indicator_id": "residents.residents",
                    "order": 1, "flowgeek_url": "https://example.org", "label": "Residents",
                    "description": "People.", "method": "A count.", "unit": "people",
                    "num_decimals": 0, "scale_type": "linear", "hatching": False,
                    "data_type": "single_location"}],
    "temporal_resolutions": [{"trid": 1, "label": "Month", "index": 1,
                              "relativedelta_unit": "months", "relativedelta_num": 1,
                              "date_format": "%Y-%m", "description": "A month",
                              "default_selected": 12}],
    "spatial_resolutions": [{"srid": 1, "label": "District", "index": 1, "description": "Two",
        "boundaries": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"pcod": code},
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}
            for code in ("D1", "D2")]}}],
}  # fmt: skip
EVERYONE = ("read:free_data", "read:premium_data")


def deployment(directory: Path) -> tuple[Store, Path]:
    """An embedded backend with the config above and no data yet, and a manifest that
    names it as its target and the two reading scopes in its access rules."""
    store = Store(str(directory / "source.db"))
    assert store.post_setup(CONFIG).status == 204
    (directory / "config.json").write_text(json.dumps(CONFIG))
    (directory / "one.csv").write_text("month,pcod,residents\n2021-01,D1,1\n")
    manifest = directory / "source.yaml"
    manifest.write_text(
        "version: 1\ntargets:\n  here: {url: 'local:source.db'}\nsetup: config.json\n"
        "unit_properties: {District: pcod}\nrevision: r1\n"
        "datasets:\n  - {file: one.csv, category: residents, "
        "spatial_resolution: District, temporal_resolution: Month, "
        "columns: {date: month, spatial_unit: pcod}}\n"
        "access:\n" + "".join(f"  {s}:\n    - indicator: residents.residents\n" for s in EVERYONE)
    )
    return store, manifest


def put(store: Store, dt: str, cells: dict[str, int], scopes: tuple[str, ...] = ()) -> int:
    """A residents dataset of `cells` (nanos by unit) on `dt`, granted to `scopes`."""
    meta = {"revision": "x", "category_id": "residents", "indicator_id": "residents.residents",
            "srid": 1, "trid": 1, "dt": dt}  # fmt: skip
    reply = store.write_dataset(Incoming(meta, "single_location", list(cells),
                                         [None] * len(cells), list(cells.values())),
                                replace=False)  # fmt: skip
    assert reply.status == 201, reply
    for scope in scopes:
        store.post_mapping(scope, int(reply.body))
    return int(reply.body)
