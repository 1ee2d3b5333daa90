"""The apply's operating-system lock (loader/backends/oslock.py), unit by unit: the text
that names a holder and how a refusal describes it, a holder in another process (refused,
then released), a holder killed with SIGKILL (its file taken), a lock not inherited by a
child process, and a folder that cannot be made. In-process takers and a holder through
a real apply are in tests/cross_cutting/test_local_writers.py."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loader.backends import oslock
from loader.model import LoaderError
from tests.conftest import ROOT

TIMEOUT = 60  # seconds any one wait may take: a bound, not an expectation
SINCE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
WAIT_FOR_GO = (  # argv: GO; a process that waits for GO to exist, at most TIMEOUT seconds
    f"import os, sys, time\ndeadline = time.monotonic() + {TIMEOUT}\n"
    "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\n"
    "    time.sleep(0.02)\n"
)
HOLD = (  # argv: LOCK READY GO CHILD; holds LOCK as `other`, READY holds a child's pid
    "import os, subprocess, sys\nfrom loader.backends import oslock\n"
    "lock, ready, go, child = sys.argv[1:]\n"
    "with oslock.exclusive(lock, 'local:x.db', who='other'):\n"
    f"    pid = subprocess.Popen([sys.executable, '-c', {WAIT_FOR_GO!r}, go], close_fds=False)"
    ".pid if child == 'child' else ''\n"
    "    open(ready + '.tmp', 'w').write(str(pid)); os.replace(ready + '.tmp', ready)\n"
    f"    exec({WAIT_FOR_GO.replace('sys.argv[1]', 'go')!r})\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Callable[[Path, bool], tuple[subprocess.Popen[str], str]]]:
    """Start a process holding a lock; (its process, the pid of its child or '')."""
    started: list[subprocess.Popen[str]] = []
    go = tmp_path / "go"

    def start(lock: Path, child: bool = False) -> tuple[subprocess.Popen[str], str]:
        ready = tmp_path / f"ready{len(started)}"
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(lock), str(ready), str(go), "child" * child],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(process)
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the holder never held: {process.communicate(timeout=TIMEOUT)}")
            time.sleep(0.02)
        return process, ready.read_text()

    yield start
    go.touch()  # every holder and child ends on its own; one that does not is killed
    for process in started:
        try:
            process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=TIMEOUT)


def test_holder_text_names_user_host_pid_and_utc_time(monkeypatch: pytest.MonkeyPatch) -> None:
    named = json.loads(oslock.holder_text("me"))
    assert sorted(named) == ["holder", "since"]
    assert named["holder"] == f"me@{socket.gethostname()}:{os.getpid()}"
    assert re.fullmatch(SINCE, named["since"])
    monkeypatch.setenv("USER", "from-env")
    assert json.loads(oslock.holder_text())["holder"].startswith("from-env@")
    monkeypatch.delenv("USER")
    assert json.loads(oslock.holder_text())["holder"].startswith("someone@")


@pytest.mark.parametrize(
    ("data", "described"),
    [
        (
            b'{"holder": "a@h:1", "since": "2020-01-01T00:00:00Z"}',
            "a@h:1 since 2020-01-01T00:00:00Z",
        ),
        (b'{"holder": "a@h:1"}', "a@h:1"),
        (b'{"holder": "a@h:1", "since": 5}', "a@h:1"),
        (b'{"holder": "' + b"x" * 100 + b'", "since": "s"}', "x" * 57 + "... since s"),
        (b'{"holder": "a\\nb"}', "a\\nb"),  # one line, whatever the file holds
    ],
)
def test_a_refusal_describes_the_holder_the_file_names(data: bytes, described: str) -> None:
    assert oslock.describe(data) == described


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"not json", b"[]", b'{"holder": 7}', b"{}"])
def test_a_file_that_names_nobody_is_described_as_unknown(data: bytes) -> None:
    assert oslock.describe(data) == "its holder unknown"


def test_a_holder_in_another_process_is_refused_until_it_releases(
    tmp_path: Path, holder: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    lock = tmp_path / "x.db.apply.lock"
    process, _ = holder(lock)
    since = json.loads(lock.read_text())["since"]
    with pytest.raises(oslock.Held) as refused, oslock.exclusive(lock, "local:x.db"):
        pytest.fail("taken while another process holds it")
    assert str(refused.value) == (
        f"local:x.db is being written by another apply (other@{socket.gethostname()}:"
        f"{process.pid} since {since}): wait for it to finish"
    )
    (tmp_path / "go").touch()
    assert process.communicate(timeout=TIMEOUT) == ("", "")
    assert process.returncode == 0 and not lock.exists()  # the holder removed its file
    with oslock.exclusive(lock, "local:x.db", who="me"):
        assert json.loads(lock.read_text())["holder"].startswith("me@")


def test_a_holder_killed_with_sigkill_leaves_a_file_that_is_taken(
    tmp_path: Path, holder: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    lock = tmp_path / "x.db.apply.lock"
    process, _ = holder(lock)
    process.kill()
    assert process.wait(timeout=TIMEOUT) == -9
    assert json.loads(lock.read_text())["holder"].startswith("other@")  # left behind
    with oslock.exclusive(lock, "local:x.db", who="me"):
        assert json.loads(lock.read_text())["holder"].startswith("me@")
    assert not lock.exists()


def test_a_child_of_the_holder_does_not_keep_the_lock(
    tmp_path: Path, holder: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    """The child is started with close_fds=False: only PEP 446 keeps the lock from it."""
    lock = tmp_path / "x.db.apply.lock"
    process, child = holder(lock, True)
    process.kill()
    assert process.wait(timeout=TIMEOUT) == -9
    os.kill(int(child), 0)  # the child still runs (it waits for GO)
    with oslock.exclusive(lock, "local:x.db", who="me"):
        assert json.loads(lock.read_text())["holder"].startswith("me@")


def test_a_folder_that_cannot_be_made_is_one_line_and_nothing_is_left(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    lock = tmp_path / "file" / "sub" / "x.db.apply.lock"
    with pytest.raises(LoaderError) as refused, oslock.exclusive(lock, "local:x.db"):
        pytest.fail("taken where no folder can be made")
    assert str(refused.value) == f"local:x.db: cannot create {lock.parent}: Not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
