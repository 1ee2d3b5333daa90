"""Targets -> backends by URL scheme (loader/backends/factory.py): the kinds' URL forms,
`local:` paths (absent, created, refused), an unknown scheme, a kind registered in the
table, and the writer lock each kind gives (the `local:` one held by another process)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loader.backends import factory
from loader.backends.local import AbsentBackend, LocalBackend
from loader.backends.oslock import Held
from loader.backends.remote import RemoteBackend
from loader.model import Backend, BackendError, LoaderError, SetupConfig, Target
from tests.conftest import ROOT

SETUP = SetupConfig(entities=(), categories={}, spatial={}, temporal={})
TIMEOUT = 60  # seconds any one wait may take: a bound, not an expectation
EMPTY = "0 languages, 0 data providers"


def local(path: Path) -> Target:
    return Target("t", f"local:{path}", "state.json")


def test_scheme_of_is_the_lowercased_text_before_the_first_colon() -> None:
    assert [factory.scheme_of(u) for u in ("HTTPS://h/v1", "local:a:b.db", "no-colon")] == [
        "https", "local", ""]  # fmt: skip


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("local:x.db", "local"), ("http://h/v1", "http"), ("https://h:8443", "https"),
     ("local:", None), ("http://", None), ("http://h /v1", None), ("ftp://h/x", None), ("", None)],
)  # fmt: skip
def test_kind_of_takes_only_a_url_written_in_its_kinds_form(url: str, scheme: str | None) -> None:
    assert factory.kind_of(url) is (None if scheme is None else factory.KINDS[scheme])


def test_an_absent_database_opened_read_only_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "new" / "x.db"
    with factory.open_backend(local(db), SETUP, factory.Opening(read_only=True)) as backend:
        assert isinstance(backend, AbsentBackend)
        assert backend.wait_ready(0) == (
            f"embedded backend at {db}: no database yet (the first apply creates it)"
        )
        with pytest.raises(BackendError) as refused:
            backend.grant("read:free", 1)
        assert (refused.value.call, refused.value.text) == (
            "POST /scope_mapping", f"local:{db} does not exist yet (read-only here)")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_an_absent_database_opened_to_write_is_created_then_read(tmp_path: Path) -> None:
    db = tmp_path / "new" / "x.db"
    with factory.open_backend(local(db), SETUP) as backend:
        assert backend.wait_ready(0) == f"embedded backend at {db}: {EMPTY}"
    assert db.read_bytes().startswith(factory.SQLITE_HEADER)
    with factory.open_backend(local(db), SETUP, factory.Opening(read_only=True)) as again:
        assert isinstance(again, LocalBackend)
        assert again.wait_ready(0) == f"embedded backend at {db}: {EMPTY}"


@pytest.mark.parametrize("read_only", [False, True])
def test_a_directory_or_a_file_that_is_not_sqlite_is_refused(
    tmp_path: Path, read_only: bool
) -> None:
    opening = factory.Opening(read_only=read_only)
    with pytest.raises(LoaderError) as refused:
        factory.open_backend(local(tmp_path), SETUP, opening)
    assert str(refused.value) == f"local:{tmp_path}: a directory, not a database file"
    text = tmp_path / "notes.db"
    text.write_text("hello")
    with pytest.raises(LoaderError) as refused:
        factory.open_backend(local(text), SETUP, opening)
    assert str(refused.value) == f"local:{text}: not a SQLite database"
    assert text.read_text() == "hello"
    (tmp_path / "empty.db").write_bytes(b"")  # an empty file is a new database
    with factory.open_backend(local(tmp_path / "empty.db"), SETUP, opening) as backend:
        assert backend.wait_ready(0) == f"embedded backend at {tmp_path / 'empty.db'}: {EMPTY}"


def test_an_unknown_scheme_is_refused_naming_the_forms() -> None:
    assert factory.url_forms() == "local:PATH or http(s)://host/v1"
    target = Target("t", "ftp://h/x", "state.json")
    for call in (lambda: factory.open_backend(target, SETUP), lambda: factory.writer_lock(target)):
        with pytest.raises(LoaderError) as refused:
            call()
        assert str(refused.value) == "target t: its url must be local:PATH or http(s)://host/v1"


def test_a_remote_target_opens_the_client_with_the_targets_ca_bundle(tmp_path: Path) -> None:
    with factory.open_backend(Target("r", "http://127.0.0.1:9/v1", "s.json"), SETUP) as backend:
        assert isinstance(backend, RemoteBackend)  # nothing connects before it is asked
    missing = tmp_path / "ca.pem"
    with pytest.raises(LoaderError, match=f"^ca_bundle {missing} cannot be read as PEM"):
        factory.open_backend(Target("r", "https://h/v1", "s.json", ca_bundle=str(missing)), SETUP)


def test_a_registered_kind_opens_its_targets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[Target, SetupConfig, factory.Opening]] = []
    opened = AbsentBackend(tmp_path / "memory.db")

    def open_memory(target: Target, setup: SetupConfig, opening: factory.Opening) -> Backend:
        calls.append((target, setup, opening))
        return opened

    # A placeholder through monkeypatch, so that the kind `register` puts there is removed after.
    monkeypatch.setitem(factory.KINDS, "memory", factory.KINDS["local"])
    kind = factory.BackendKind("memory:NAME", r"memory:\w+", open_memory, needs_credentials=False)
    factory.register("memory", kind)
    target, opening = Target("m", "memory:deploy", "s.json"), factory.Opening(parallelism=2)
    assert factory.open_backend(target, SETUP, opening) is opened
    assert calls == [(target, SETUP, opening)]
    assert (factory.kind_of("memory:deploy"), factory.kind_of("memory:a-b")) == (kind, None)
    assert factory.url_forms() == "local:PATH or http(s)://host/v1 or memory:NAME"
    assert isinstance(factory.writer_lock(target), contextlib.nullcontext)  # the default


def test_an_http_target_has_no_writer_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("http://h/v1", "https://h/v1"):
        lock = factory.writer_lock(Target("r", url, "s.json"), "me")
        assert isinstance(lock, contextlib.nullcontext)
        with lock, factory.writer_lock(Target("r", url, "s.json")):
            pass  # two at once: the server guards its own data
    assert list(tmp_path.iterdir()) == []


def test_a_local_writer_lock_refuses_while_another_process_holds_it(tmp_path: Path) -> None:
    db, ready, go = tmp_path / "x.db", tmp_path / "ready", tmp_path / "go"
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.holding", str(ready), str(go), "lock", f"local:{db}"],
        cwd=ROOT, env={**os.environ, "USER": "first"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), f"the holder never held (exit {holder.poll()})"
        lock_file = tmp_path / "x.db.apply.lock"
        since = json.loads(lock_file.read_text())["since"]
        with pytest.raises(Held) as refused, factory.writer_lock(local(db), "second"):
            pytest.fail("taken while another process holds it")
        assert str(refused.value) == (
            f"local:{db} is being written by another apply (first@{socket.gethostname()}:"
            f"{holder.pid} since {since}): wait for it to finish"
        )
        go.touch()
        assert (holder.communicate(timeout=TIMEOUT), holder.returncode) == (("", ""), 0)
        with factory.writer_lock(local(db), "second"):
            assert json.loads(lock_file.read_text())["holder"].startswith("second@")
        assert not lock_file.exists() and not db.exists()  # the lock alone creates no database
    finally:
        go.touch()
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=TIMEOUT)
