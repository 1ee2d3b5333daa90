"""How close does a no-change plan come to the reads it cannot avoid?

Against ``flowkit-loader serve --upstream-quirks`` on loopback, on a fresh database, the
upstream synthetic manifest (``tests/data/upstream/manifest.yaml``, data read in place) is
applied once; then, alternately, RUNS times each, in fresh processes timed from outside
(interpreter start included, as a user or a CI job waits for them):

* the plan: ``python -m loader plan MANIFEST --detailed-exitcode``, its data files in the
  cache (as every plan after the first), which must find nothing to change;
* the floor: a bare httpx client in a fresh interpreter that fetches the same token and
  sends the same reads the plan needs (``GET /setup``, then one ``POST /query`` for the
  mdids of each indicator at each resolution, the very bodies the plan sends) and nothing
  else.

Both run with their bytecode compiled beforehand, as an installed package's is (pip
compiles it at install; this tree's may not be, with PYTHONDONTWRITEBYTECODE set): the
bench compiles loader/ into its __pycache__ folders (ignored by git), as Python itself
does on a first run without that setting.

Prints both medians and the ratio plan / floor (the bar: at most 1.5), then where the
plan's time goes, measured in one more process: interpreter start, imports, reading the
manifest and the cached summaries, the server's reads, the diff, rendering.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SERVE_AUDIENCE, SERVE_SECRET_ENV, fail, served_manifest, serving

import loader
from loader.record import groups
from loader.refresh import Grids
from loader.run import open_run

RUNS = 15
MAX_RATIO = 1.5

FLOOR = """
import json, sys
import httpx
base, secret, bodies = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
root = base.removesuffix("/v1")
token = httpx.post(root + "/oauth/token", json={"client_id": "dev-admin",
    "client_secret": secret, "audience": sys.argv[4], "grant_type": "client_credentials"}
).json()["access_token"]
with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
    assert client.get("/setup").status_code == 200
    for body in bodies:
        assert client.post("/query", json=body).status_code == 200
"""

PHASES = """
import gc, io, json, sys, time, contextlib
started = time.perf_counter()
from loader.__main__ import GC_YOUNG_THRESHOLD  # the command's entry sets it first
gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
import loader.cli, loader.run, loader.render, loader.planfile
imported = time.perf_counter()
manifest, environ = sys.argv[1], json.loads(sys.argv[2])
run = loader.run.open_run(manifest, environ=environ)
opened = time.perf_counter()
with loader.run.connect(run, read_only=True) as connection:
    connected = time.perf_counter()
    made = loader.run.make_run_plan(run, connection)
planned = time.perf_counter()
text = loader.render.render(loader.planfile.plan_data(made), "text")
rendered = time.perf_counter()
print(json.dumps({"imports": imported - started, "manifest, cached data": opened - imported,
    "token, connection": connected - opened, "reads and diff": planned - connected,
    "render": rendered - planned}))
"""


def timed(command: list[str], env: dict[str, str], expect: int = 0) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          timeout=300, cwd=ROOT)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != expect:
        fail(f"{command[:4]} exited {done.returncode}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return seconds


def query_bodies(manifest: Path, environ: dict[str, str]) -> list[dict[str, object]]:
    """The /query bodies of a no-change plan: one per (indicator, srid, trid)."""
    run = open_run(manifest, environ=environ)
    grids = Grids(run.setup)
    keys = {*run.record.datasets, *run.desired.datasets}
    bodies = []
    for group_keys in groups(keys).values():
        query = grids.query(group_keys)
        if query is not None:
            bodies.append(query.body(True))
    return bodies


def main() -> int:
    secret = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-plan-") as scratch:
        directory = Path(scratch)
        env = {k: v for k, v in os.environ.items() if k != "FLOWKIT_LOADER_NO_CACHE"}
        env.update({SERVE_SECRET_ENV: secret, "FLOWKIT_LOADER_CACHE_DIR": str(directory / "cache")})
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "loader")],
                       env=env, check=True, timeout=300)  # fmt: skip
        with serving(directory / "serve.db", secret, "--upstream-quirks") as base:
            manifest = served_manifest(directory, base)
            applied = loader.apply(manifest, environ={SERVE_SECRET_ENV: secret})
            if not applied.result.ok:
                fail(f"the apply did not complete: {applied.result.counts()}")
            bodies = query_bodies(manifest, {SERVE_SECRET_ENV: secret})
            (directory / "bodies.json").write_text(json.dumps(bodies))
            plan = [sys.executable, "-m", "loader", "plan", str(manifest), "--detailed-exitcode"]
            floor = [sys.executable, "-c", FLOOR, base, secret, str(directory / "bodies.json"),
                     SERVE_AUDIENCE]  # fmt: skip
            time.sleep(2.5)  # files older than the cache's racy window: their entries count
            timed(plan, env)  # warms the cache, as every plan after the first finds it
            plans, floors = [], []
            for _ in range(RUNS):
                plans.append(timed(plan, env))
                floors.append(timed(floor, env))
            start = [timed([sys.executable, "-c", "pass"], env) for _ in range(RUNS)]
            environ = json.dumps({SERVE_SECRET_ENV: secret})
            phases = subprocess.run(
                [sys.executable, "-c", PHASES, str(manifest), environ],
                env=env, capture_output=True, text=True, check=True, timeout=300, cwd=ROOT,
            )  # fmt: skip
    plan_seconds, floor_seconds = statistics.median(plans), statistics.median(floors)
    print(f"no-change plan, median of {RUNS}: {plan_seconds:.3f} s "
          f"(runs: {', '.join(f'{s:.3f}' for s in plans)})")  # fmt: skip
    print(f"floor (token, GET /setup, {len(bodies)} POST /query from a bare client): "
          f"{floor_seconds:.3f} s (runs: {', '.join(f'{s:.3f}' for s in floors)})")  # fmt: skip
    print("where the plan's time goes:")
    print(f"  interpreter start{statistics.median(start):>10.3f} s")
    for name, seconds in json.loads(phases.stdout.splitlines()[-1]).items():
        print(f"  {name:<17}{seconds:>10.3f} s")
    ratio = plan_seconds / floor_seconds
    print(f"ratio plan / floor: {ratio:.2f} (must be at most {MAX_RATIO})")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
