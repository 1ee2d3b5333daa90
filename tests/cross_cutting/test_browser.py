"""In a real browser (Debian's Chromium, headless): the status report of a deployment with
a known gap is drawn to PNG and the colours at its cells are read back; the Markdown
plan's Mermaid chart is parsed by npm's `mermaid` in the same browser. Marked slow (the
default run leaves them out); `.ci/run` installs both and runs them explicitly
(`pytest -m browser`). Without a browser or mermaid they fail, saying what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from loader.coverage import CHANGED, COLOURS, GAP, LOADED, PARTLY
from tests.helpers import cli_run, write_manifest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

MIN_CELL = 4  # pixels
MERMAID_ENV = "FLOWKIT_MERMAID_JS"  # mermaid/dist/mermaid.min.js, as .ci/run installs it
# residents.csv over January, February and April: March is a gap.
RESIDENTS = (
    "month,pcod,residents,residents_perKm2,arrived\n"
    "2021-01-01,EX01-01,100,1.5,10\n"
    "2021-02-01,EX01-01,110,1.6,11\n"
    "2021-04-01,EX01-01,130,1.8,13\n"
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "no chromium on PATH: `apt-get install chromium` (.ci/run does)"
    return found


def browse(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, sandboxless (CI runs as root), sRGB so colours come back exact."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--force-color-profile=srgb", "--hide-scrollbars", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def colour_runs(image: Image.Image, y: int) -> list[str]:
    """The cell states along one row of pixels, left to right: runs of a state's colour at
    least MIN_CELL pixels wide (a cell is 6; a text's or a border's edge is not)."""
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): s for s, c in COLOURS.items()}
    runs: list[str] = []
    current, width = None, 0
    for x in range(image.width + 1):
        state = None
        if x < image.width:
            pixel = image.getpixel((x, y))
            assert isinstance(pixel, tuple)
            state = next((s for rgb, s in wanted.items()
                          if all(abs(a - b) <= 3 for a, b in zip(rgb, pixel, strict=True))),
                         None)  # fmt: skip
        if state == current and x < image.width:
            width += 1
            continue
        if current is not None and width >= MIN_CELL:
            runs.append(current)
        current, width = state, 1
    return runs


def test_the_status_report_draws_loaded_gap_and_changed_cells_in_their_colours(
    tmp_path: Path,
) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    assert cli_run("apply", str(manifest), "--yes")[0] == 0
    csv = tmp_path / "residents.csv"
    csv.write_text(csv.read_text().replace("2021-04-01,EX01-01,130,", "2021-04-01,EX01-01,131,"))
    assert cli_run("apply", str(manifest), "--yes")[0] == 0  # April's residents rewritten
    code, page = cli_run("status", str(manifest), "--format", "html")
    assert code == 0
    report = tmp_path / "status.html"
    report.write_text(page)
    shot = tmp_path / "status.png"
    done = browse(f"--screenshot={shot}", "--window-size=1400,900", report.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    rows = []
    for y in range(image.height):
        runs = colour_runs(image, y)
        if runs and (not rows or rows[-1] != runs):
            rows.append(runs)
    drawn = [r for r in rows if LOADED in r]
    # The legend, then three series (arrived, residents, residents_perKm2), a row of
    # cells each: the last apply rewrote only the residents' April.
    legend = [LOADED, CHANGED, PARTLY, GAP]
    assert drawn == [legend, [LOADED, LOADED, GAP, LOADED], [LOADED, LOADED, GAP, CHANGED],
                     [LOADED, LOADED, GAP, LOADED]], rows  # fmt: skip


def mermaid_js() -> Path:
    found = os.environ.get(MERMAID_ENV)
    assert found and Path(found).is_file(), (
        f"{MERMAID_ENV} must name mermaid/dist/mermaid.min.js (`npm install mermaid`; .ci/run does)"
    )
    return Path(found)


def parsed(chart: str, tmp_path: Path) -> str:
    """What mermaid.parse says of `chart` in the browser: `parsed gantt` or `error: ...`."""
    page = tmp_path / "parse.html"
    script = mermaid_js().as_uri()
    page.write_text(
        "<!DOCTYPE html><html><body><pre id='chart'></pre><div id='result'>pending</div>"
        f"<script src='{script}'></script><script>"
        f"const chart = {chart!r};"  # a Python repr of text is a valid JS string here
        "mermaid.initialize({startOnLoad: false});"
        "mermaid.parse(chart).then(r => { result.textContent = 'parsed ' + r.diagramType; })"
        ".catch(e => { result.textContent = 'error: ' + e.message; });"
        "</script></body></html>"
    )
    done = browse("--allow-file-access-from-files", "--virtual-time-budget=20000",
                  "--dump-dom", page.as_uri())  # fmt: skip
    start = done.stdout.find('<div id="result">')
    assert start >= 0, done.stderr[-2000:]
    return done.stdout[start + len('<div id="result">') :].split("</div>", 1)[0]


def test_the_markdown_plans_chart_is_a_gantt_chart_mermaid_reads(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS})
    code, markdown = cli_run("plan", str(manifest), "--format", "markdown")
    assert code == 0 and "```mermaid\n" in markdown
    chart = markdown.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    assert parsed(chart, tmp_path) == "parsed gantt"
    # The check can fail: what is not a diagram Mermaid knows is refused.
    assert parsed(chart.replace("gantt", "gnatt", 1), tmp_path).startswith("error: ")
