"""How close does flowkit-loader's export come to the fastest a client can read a
deployment back?

Against ``flowkit-loader serve --upstream-quirks --latency`` on loopback (the real
service's cost per request and per value), filled once by an apply of the upstream
manifest (149 datasets, 283,530 values, the notebook's access rules), in one session:

* the floor: a bare httpx client that sends exactly the reads export sends, byte for byte
  as a warm-up export sent them before the clock starts, phase by phase as each needs the
  answers of the one before (the config; each series' dates and count; each window's
  values; the grants' mdid reads as each scope's reader), every read of a phase at once
  at fixed concurrencies of 1, 2, 4 and 8, parsing nothing and writing nothing; it
  fetches its tokens on the clock, as export does; the best concurrency is the floor;
* ours: ``loader.export.export`` of the same manifest into a fresh folder, with the
  collector's rhythm the command's process sets (``partial``: upstream's config has
  resolutions without data, which the service does not show), timed from the call to its
  return: validation, discovery, the windows (8 in flight, the default), the grants, the
  folder written (23 CSVs, config.json, deploy.yaml).

Each is run RUNS times, alternately, and the medians are compared. The first export is
checked to carry every dataset. Prints the requests replayed, the times, and ours /
floor (the bar: at most 2.5: export also parses every value and writes every file, which
on this data is as much work for the client as the reads are for the server); the exit
status is non-zero above it.
"""

from __future__ import annotations

import gc
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from common import SERVE_AUDIENCE, SERVE_SECRET_ENV, fail, recording, served_manifest, serving

import loader
import loader.export as export_module
from loader.__main__ import GC_YOUNG_THRESHOLD
from loader.export import export

MAX_RATIO = 2.5  # ours / the floor
RUNS = 5
CONCURRENCIES = (1, 2, 4, 8)
SERVE_OPTIONS = ("--upstream-quirks", "--latency")
SENT_HEADERS = ("content-type", "content-encoding", "accept", "accept-encoding")
READERS = {"read:free_data": "dev-reader", "read:premium_data": "dev-premium"}


def with_readers(manifest: Path) -> Path:
    """The manifest with a reader credential for each scope its access rules name."""
    secret = f"client_secret: '${{{SERVE_SECRET_ENV}}}'"
    lines = "".join(f"        {scope}: {{client_id: {client}, {secret}}}\n"
                    for scope, client in READERS.items())  # fmt: skip
    text = manifest.read_text()
    anchor = "    credentials:\n"
    start = text.index(anchor) + len(anchor)
    end = text.index("\n", start) + 1  # after the `all:` line
    manifest.write_text(text[:end] + "      scopes:\n" + lines + text[end:])
    return manifest


Sent = tuple[str, str, bytes, dict[str, str], str]  # method, path, body, headers, client


PHASES = ("config", "series", "windows", "grants")


def export_requests(manifest: Path, out: Path, secret: str) -> list[list[Sent]]:
    """The reads of a warm-up export, phase by phase (each phase needs the answers of the
    one before it), each with the client whose token it carried."""
    starts: list[int] = []

    def marking(step: Callable[..., Any]) -> Callable[..., Any]:
        def marked(*args: Any, **kwargs: Any) -> Any:
            starts.append(len(seen))
            return step(*args, **kwargs)

        return marked

    steps = {name: getattr(export_module, name) for name in ("find_series", "_read_values",
                                                            "_read_grants")}  # fmt: skip
    with recording() as seen:
        for name, step in steps.items():
            setattr(export_module, name, marking(step))
        try:
            exported = export(manifest, out, partial=True, environ={SERVE_SECRET_ENV: secret})
        finally:
            for name, step in steps.items():
                setattr(export_module, name, step)
    if exported.datasets != 149 or len(exported.losses.found) != 2:  # config without data
        fail(f"the warm-up export did not carry every dataset: {exported.losses.found}")
    tokens: dict[str, str] = {}
    phases: list[list[Sent]] = [[] for _ in PHASES]
    for index, (request, response) in enumerate(seen):
        path = request.url.raw_path.decode()
        if path.endswith("/oauth/token"):  # the floor fetches its own, for the same clients
            tokens[response.json()["access_token"]] = json.loads(request.content)["client_id"]
            continue
        authorization = request.headers.get("authorization", "")
        who = tokens.get(authorization.removeprefix("Bearer "), "")
        headers = {name: request.headers[name] for name in SENT_HEADERS if name in request.headers}
        phase = sum(1 for start in starts if start <= index)
        phases[phase].append((request.method, path, request.content, headers, who))
    return phases


def token(client: httpx.Client, url: str, client_id: str, secret: str) -> str:
    body = {"client_id": client_id, "client_secret": secret, "audience": SERVE_AUDIENCE,
            "grant_type": "client_credentials"}  # fmt: skip
    return str(client.post(url, json=body).json()["access_token"])


def floor(base: str, secret: str, phases: list[list[Sent]], concurrency: int) -> float:
    root = base.removesuffix("/v1")
    origin = httpx.URL(base).copy_with(raw_path=b"/")
    with httpx.Client(base_url=str(origin).rstrip("/"), timeout=60) as client:
        start = time.perf_counter()
        bearer = {who: token(client, f"{root}/oauth/token", who, secret)
                  for who in {s[4] for phase in phases for s in phase if s[4]}}  # fmt: skip

        def send(item: Sent) -> None:
            method, path, content, headers, who = item
            if who:
                headers = {**headers, "authorization": f"Bearer {bearer[who]}"}
            response = client.request(method, path, content=content or None, headers=headers)
            response.read()
            if response.status_code >= 400 and response.status_code != 404:  # 404: none seen
                fail(f"the floor's {method} {path} answered {response.status_code}")

        with ThreadPoolExecutor(concurrency) as pool:
            for phase in phases:  # each at once, after the one before
                list(pool.map(send, phase))
        return time.perf_counter() - start


def ours(manifest: Path, out: Path, secret: str) -> float:
    # With the cyclic collector's rhythm the command sets for its process.
    threshold = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *threshold[1:])
    try:
        return _timed_export(manifest, out, secret)
    finally:
        gc.set_threshold(*threshold)


def _timed_export(manifest: Path, out: Path, secret: str) -> float:
    start = time.perf_counter()
    export(manifest, out, partial=True, environ={SERVE_SECRET_ENV: secret})
    return time.perf_counter() - start


def main() -> int:
    secret = secrets.token_urlsafe(16)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-export-") as scratch:
        directory = Path(scratch)
        with serving(directory / "serve.db", secret, *SERVE_OPTIONS) as base:
            manifest = served_manifest(directory, base)
            applied = loader.apply(manifest, environ={SERVE_SECRET_ENV: secret})
            if not applied.result.ok:
                fail(f"the apply that fills the server did not complete: {applied.result.counts()}")
            manifest = with_readers(manifest)
            phases = export_requests(manifest, directory / "warm-up", secret)
            for name, phase in zip(PHASES, phases, strict=True):
                calls = Counter(f"{method} {path.split('/')[2]}" for method, path, *_ in phase)
                print(f"{name} requests: " + ", ".join(f"{c} {n}" for c, n in calls.items()))
            for run in range(RUNS):
                for concurrency in CONCURRENCIES:
                    took = floor(base, secret, phases, concurrency)
                    times.setdefault(f"floor, {concurrency} in flight", []).append(took)
                took = ours(manifest, directory / f"ours-{run}", secret)
                times.setdefault("flowkit-loader export", []).append(took)
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    for name, seconds in medians.items():
        print(f"{name:<28}{seconds:>7.2f} s   (runs: {', '.join(f'{s:.2f}' for s in times[name])})")
    best = min((s, n) for n, s in medians.items() if n.startswith("floor"))
    ratio = medians["flowkit-loader export"] / best[0]
    print(f"ours / floor ({best[1]}): {ratio:.2f} (must be at most {MAX_RATIO:.2f})")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
