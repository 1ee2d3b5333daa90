"""What the benchmarks share: where upstream's data is, loading a manifest's canonical
datasets outside any timing, a `serve` to time against, and a record of the requests an
httpx client sent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_DATA = ROOT.parent / "shared" / "reference" / "upstream-data"
UPSTREAM_MANIFEST = ROOT / "tests" / "data" / "upstream" / "manifest.yaml"
SERVE_SECRET_ENV = "FLOWKIT_SERVE_SECRET"
SERVE_AUDIENCE = "https://flowkit-ui-backend.local"
SERVER_START_TIMEOUT = 60.0
SERVING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+/v1)")

os.environ["FLOWKIT_LOADER_NO_CACHE"] = "1"  # before importing loader: never use a cache
sys.path.insert(0, str(ROOT))

from loader.data import read_datasets  # noqa: E402
from loader.model import Dataset, Manifest  # noqa: E402
from loader.validation import validate  # noqa: E402


def fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_manifest(path: Path) -> Manifest:
    report = validate(path, data=False)
    if not report.ok or report.manifest is None:
        problems = "\n".join(str(p) for p in report.errors)
        fail(f"{path} is invalid:\n{problems}")
    assert report.manifest is not None
    return report.manifest


def prepare(manifest: Manifest) -> list[Dataset]:
    """Every canonical dataset of every file of the manifest, materialised."""
    setup = manifest.setup()
    datasets: list[Dataset] = []
    for spec in manifest.datasets:
        for path in spec.files:
            iterator, file_report = read_datasets(spec, path, setup)
            datasets.extend(iterator)
            if file_report.has_errors:
                fail(f"{path}: {file_report.problems[0]}")
    return datasets


@contextmanager
def serving(db_path: Path, secret: str, *extra: str) -> Iterator[str]:
    """`python -m loader serve` on a free loopback port; yields its base URL (…/v1) and
    always stops it (its own process, by pid)."""
    log_path = db_path.with_suffix(".log")
    env = {**os.environ, SERVE_SECRET_ENV: secret}
    command = [sys.executable, "-m", "loader", "serve", "--db", str(db_path), "--port", "0"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", *extra],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            found = SERVING.search(log_path.read_text(errors="replace"))
            if found:
                break
            if process.poll() is not None:
                raise RuntimeError(f"serve exited ({process.returncode}):\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start within {SERVER_START_TIMEOUT:.0f}s")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def served_manifest(directory: Path, base_url: str) -> Path:
    """The upstream manifest aimed at a `serve` at `base_url` (…/v1), its data read in
    place and its state record in `directory`."""
    text = UPSTREAM_MANIFEST.read_text().replace(
        "../../../../shared/reference/upstream-data", str(UPSTREAM_DATA)
    )
    manifest = directory / "upstream.yaml"
    manifest.write_text(aimed_at(text, base_url, directory / "served.state.json"))
    return manifest


def aimed_at(manifest_text: str, base_url: str, state: Path) -> str:
    """A manifest's text with its targets replaced by one: the `serve` at `base_url`
    (…/v1), as its dev-admin client, its state record at `state`."""
    root = base_url.removesuffix("/v1")
    secret = f"client_secret: '${{{SERVE_SECRET_ENV}}}'"
    target = (
        "targets:\n"
        "  served:\n"
        f"    url: {base_url}\n"
        f"    state: {state}\n"
        f"    auth: {{token_url: '{root}/oauth/token', audience: '{SERVE_AUDIENCE}'}}\n"
        f"    credentials:\n      all: {{client_id: dev-admin, {secret}}}\n"
    )
    head, _, rest = manifest_text.partition("targets:")
    return head + target + rest[rest.index("setup:") :]


@contextmanager
def recording() -> Iterator[list[tuple[httpx.Request, httpx.Response]]]:
    """Every request an httpx client sends in this process, with its response, while the
    block runs (httpx's own transport, wrapped and restored)."""
    seen: list[tuple[httpx.Request, httpx.Response]] = []
    original = httpx.HTTPTransport.handle_request

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = original(self, request)
        response.read()
        seen.append((request, response))
        return response

    httpx.HTTPTransport.handle_request = handle  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        httpx.HTTPTransport.handle_request = original  # type: ignore[method-assign]
