"""`flowkit-loader serve` as a user starts it: what it announces, its token flow, and the
documented differences from upstream (expiry checked, no token answers 401)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import ROOT

SECRET = "canary-serve-secret-5d1f"
AUDIENCE = "https://flowkit-ui-backend.local"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    db = tmp_path_factory.mktemp("serve") / "serve.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "loader", "serve", "--db", str(db), "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "FLOWKIT_SERVE_SECRET": SECRET},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("development clients" in x for x in lines):
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/v1", "\n".join(lines))
        assert match, lines
        yield match.group(1), lines
    finally:
        process.terminate()
        process.wait(timeout=30)


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
        "import sys, loader.validate, loader.backends.local; "
        "print(sorted({'starlette', 'uvicorn', 'jwt'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_example_db_folder_is_ignored() -> None:
    assert ".flowkit/" in Path(ROOT / ".gitignore").read_text()
