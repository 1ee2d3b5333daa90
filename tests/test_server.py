"""`flowkit-loader serve` as a user starts it: what it announces, its token flow, and the
documented differences from upstream (expiry checked, no token answers 401)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import ROOT
from tests.serving import started as serving_started

SECRET = "canary-serve-secret-5d1f"
AUDIENCE = "https://flowkit-ui-backend.local"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    db = tmp_path_factory.mktemp("serve") / "serve.db"
    with started(db, env={**os.environ, "FLOWKIT_SERVE_SECRET": SECRET}) as (_, base, lines):
        yield base, lines


def grant(client: str, secret: str, audience: str) -> dict[str, str]:
    return {
        "client_id": client,
        "client_secret": secret,
        "audience": audience,
        "grant_type": "client_credentials",
    }


def token(base: str, client: str = "dev-admin", secret: str = SECRET) -> httpx.Response:
    return httpx.post(
        f"{base}/oauth/token",
        json={
            "client_id": client,
            "client_secret": secret,
            "audience": AUDIENCE,
            "grant_type": "client_credentials",
        },
        timeout=30,
    )


def test_announces_loopback_token_url_and_clients_never_secrets(
    served: tuple[str, list[str]],
) -> None:
    base, lines = served
    text = "\n".join(lines)
    assert "(bound to 127.0.0.1)" in text
    assert f"token URL: {base}/oauth/token" in text
    assert "development clients: dev-admin, dev-updater, dev-reader, dev-premium" in text
    assert SECRET not in text


def test_token_flow_like_auth0(served: tuple[str, list[str]]) -> None:
    base, _ = served
    answer = token(base).json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["scope"] == answer["scope"] and claims["permissions"] == ["admin"]
    assert token(base, secret="wrong").status_code == 401
    wrong_audience = httpx.post(
        f"{base}/oauth/token",
        json={
            "client_id": "dev-admin",
            "client_secret": SECRET,
            "audience": "other",
            "grant_type": "client_credentials",
        },
        timeout=30,
    )
    assert wrong_audience.status_code == 403
    keys = httpx.get(f"{base}/.well-known/jwks.json", timeout=30).json()["keys"]
    assert keys[0]["alg"] == "RS256"
    signed = jwt.decode(
        answer["access_token"],
        jwt.PyJWK(keys[0]).key,
        algorithms=["RS256"],
        audience=AUDIENCE,
    )
    assert signed["sub"] == "dev-admin@clients"


def test_deliberate_differences_from_upstream(served: tuple[str, list[str]]) -> None:
    base, _ = served
    assert httpx.get(f"{base}/v1/categories", timeout=30).status_code == 401
    answer = token(base).json()
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    issued_at = time.time()
    assert claims["exp"] > issued_at  # a live token (expiry is what serve checks)
    headers = {"Authorization": f"Bearer {answer['access_token']}"}
    assert httpx.get(f"{base}/v1/categories", headers=headers, timeout=30).json() == {
        "categories": []
    }
    garbage = {"Authorization": "Bearer not-a-token"}
    refused = httpx.get(f"{base}/v1/categories", headers=garbage, timeout=30)
    assert (refused.status_code, refused.json()) == (401, "Could not decode token")


def test_serve_stays_out_of_the_core_import_path() -> None:
    code = (
        "import sys, loader.validation, loader.backends.local; "
        "print(sorted({'starlette', 'uvicorn', 'jwt'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_example_db_folder_is_ignored() -> None:
    assert ".flowkit/" in Path(ROOT / ".gitignore").read_text()


# -- what a user can get wrong: one line, exit 1 ------------------------------------------

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKIT_SERVE_SECRET")}


def serve_fails(*args: str) -> tuple[int, str]:
    """`serve` that must not start: its exit code and stderr (bounded: a serve that did
    start is killed by the timeout, failing the test)."""
    done = subprocess.run(
        [sys.executable, "-m", "loader", "serve", *args],
        cwd=ROOT, env={**CLEAN_ENV, "FLOWKIT_SERVE_SECRET": SECRET},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode, done.stderr


def test_a_port_in_use_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "serve.db"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, stderr = serve_fails("--db", str(db), "--port", str(port))
    assert (code, stderr) == (1, (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use: another process "
        "holds it (stop it, or choose another --port; 0 picks a free one)\n"
    ))  # fmt: skip
    assert not db.exists()


@pytest.mark.parametrize("case", ["not-sqlite", "directory", "through-a-file"])
def test_a_db_that_cannot_be_one_is_one_line(tmp_path: Path, case: str) -> None:
    db = tmp_path / "serve.db"
    if case == "not-sqlite":
        db.write_text("id,value\n1,2\n")
        expected = (
            f"--db {db}: not a SQLite database: give the path of a serve database, or a new one"
        )
    elif case == "directory":
        db.mkdir()
        expected = f"--db {db}: a directory, not a database file"
    else:
        (tmp_path / "afile").write_text("a file, not a folder\n")
        db = tmp_path / "afile" / "sub" / "serve.db"
        expected = f"--db {db}: cannot create it: {tmp_path / 'afile'} is not a directory"
    before = sorted((p.name, p.is_file() and p.read_bytes()) for p in tmp_path.rglob("*"))
    code, stderr = serve_fails("--db", str(db), "--port", "0")
    assert (code, stderr) == (1, f"error: {expected}\n")
    assert sorted((p.name, p.is_file() and p.read_bytes()) for p in tmp_path.rglob("*")) == before


def test_a_non_loopback_host_warns(tmp_path: Path) -> None:
    """One warning line before anything else. Tests never listen beyond loopback: the
    address here (TEST-NET-1) is no address of this machine, so listening then fails."""
    code, stderr = serve_fails("--db", str(tmp_path / "serve.db"), "--host", "192.0.2.1",
                               "--port", "0")  # fmt: skip
    assert (code, stderr.splitlines()) == (1, [
        "warning: --host 192.0.2.1 is not a loopback address: anyone who can reach it can "
        "call this API (and, with FLOWKIT_SERVE_SECRET set, obtain admin tokens)",
        "error: cannot listen on 192.0.2.1:0: Cannot assign requested address",
    ])  # fmt: skip


def test_loopback_hosts() -> None:
    from loader.backends.server import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.10", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.1", "no-such-host.invalid"]))


def test_loopback_does_not_warn(served: tuple[str, list[str]]) -> None:
    assert not any(line.startswith("warning:") for line in served[1])


# -- an empty secret is no secret ---------------------------------------------------------


def test_an_empty_secret_enables_no_client(tmp_path: Path) -> None:
    env = {**CLEAN_ENV, "FLOWKIT_SERVE_SECRET": "", "FLOWKIT_SERVE_SECRET_DEV_ADMIN": ""}
    with started(tmp_path / "serve.db", env=env) as (_, base, lines):
        assert lines[-1] == (
            "development clients: none (FLOWKIT_SERVE_SECRET is empty, and an empty secret "
            "is no secret: set it to enable them)"
        )
        for client in ("dev-admin", "dev-reader"):
            refused = token(base, client, secret="")
            assert (refused.status_code, refused.json()) == (401, {
                "error": "access_denied", "error_description": "Unauthorized"
            })  # fmt: skip


def test_empty_secrets_in_process() -> None:
    from loader.backends.server import DEFAULT_CLIENTS, Authority, client_secret

    assert client_secret("dev-admin", {"FLOWKIT_SERVE_SECRET": ""}) is None
    own_empty = {"FLOWKIT_SERVE_SECRET_DEV_ADMIN": "", "FLOWKIT_SERVE_SECRET": "shared"}
    assert client_secret("dev-admin", own_empty) == "shared"
    authority = Authority(environ={"FLOWKIT_SERVE_SECRET": ""}, clients=DEFAULT_CLIENTS[:1])
    status, _ = authority.token_reply(grant("dev-admin", "", AUDIENCE))
    assert status == 401


# -- request bodies are bounded as they stream in -----------------------------------------


def started(
    db: Path, *extra: str, env: dict[str, str] | None = None
) -> AbstractContextManager[tuple[subprocess.Popen[str], str, list[str]]]:
    """A serve of its own, with this module's secret unless `env` is given."""
    return serving_started(db, *extra, env=env or {**CLEAN_ENV, "FLOWKIT_SERVE_SECRET": SECRET})


def peak_memory(pid: int) -> int:
    """A process's peak resident memory (bytes), as Linux counts it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def gzip_bomb(size: int) -> bytes:
    """`size` bytes of JSON whitespace, gzipped (about a thousandth of that), made in
    pieces so that the test does not hold them either."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    piece = b" " * 2**20
    parts = [packer.compress(piece) for _ in range(size // len(piece))]
    return b"".join([*parts, packer.flush()])


TOO_LARGE = "Request body too large: more than 1000 bytes{} (serve --max-body-bytes)"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_gzip_bomb_stops_at_the_bound_not_in_memory(tmp_path: Path) -> None:
    import gzip

    with started(tmp_path / "serve.db", "--max-body-bytes", "1000") as (process, base, _):
        bearer = token(base).json()["access_token"]
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
        gzipped = {**headers, "Content-Encoding": "gzip"}

        def post(body: bytes, sent: dict[str, str]) -> httpx.Response:
            return httpx.post(f"{base}/v1/data", content=body, headers=sent, timeout=60)

        bomb = gzip_bomb(256 * 2**20)  # 256 MiB once decompressed
        assert len(bomb) < 2**20
        before = peak_memory(process.pid)
        refused = post(bomb, gzipped)
        assert (refused.status_code, refused.json()) == (
            413, {"detail": TOO_LARGE.format(" once decompressed")}
        )  # fmt: skip
        assert peak_memory(process.pid) - before < 32 * 2**20  # the bomb was never held
        # The bound is exact, and holds for a plain body too, and for the token endpoint.
        at_bound = b"{}".ljust(1000)
        assert post(gzip.compress(at_bound), gzipped).status_code == 422  # read, then judged
        assert post(gzip.compress(at_bound + b" "), gzipped).status_code == 413
        assert post(at_bound, headers).status_code == 422
        plain = post(at_bound + b" ", headers)
        assert (plain.status_code, plain.json()) == (413, {"detail": TOO_LARGE.format("")})
        many = httpx.post(f"{base}/oauth/token", content=b" " * 1001, timeout=60)
        assert many.status_code == 413
        # A damaged stream is upstream's 400; the server answers on afterwards.
        broken = post(gzip.compress(at_bound)[:-12], gzipped)
        assert (broken.status_code, broken.json()) == (
            400, {"detail": "There was an error parsing the body"}
        )  # fmt: skip
        assert httpx.get(f"{base}/v1/heartbeat", timeout=30).status_code == 200


def test_the_default_bound_is_2_gib() -> None:
    from loader.backends.server import MAX_BODY_BYTES
    from loader.cli import serve_command

    option = next(p for p in serve_command.params if p.name == "max_body_bytes")
    assert option.default == MAX_BODY_BYTES == 2 * 1024**3
