"""What earlier runs found clean, remembered by the digest of exactly what was checked, so
that a plan of an unchanged manifest neither imports jsonschema nor walks and serialises
the setup config's megabytes of boundaries again (a tenth of a second each, on every
plan).

Content-addressed, unlike the data files' cache (summaries.py, keyed by file identity): an
entry's name is the sha256 of the text it vouches for, with the schema and code that
checked it, so no edit can reuse one and there is no racy window. Only clean results are
kept: whatever had a problem is checked again and reported with its positions. The cache
is the data files' (`FLOWKIT_LOADER_CACHE_DIR`, off with `FLOWKIT_LOADER_NO_CACHE`); one
that cannot be read or written only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from loader.summaries import cache_dir

CHECKED_VERSION = 1


def digest_of(*parts: str | bytes) -> str:
    """The sha256 of `parts`, each length-prefixed (no two lists of parts collide)."""
    hashed = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hashed.update(f"{len(data)}:".encode())
        hashed.update(data)
    return hashed.hexdigest()


def _entry(kind: str, key: str) -> Path | None:
    directory = cache_dir()
    if directory is None:
        return None
    return directory / "checked" / f"{kind}-{digest_of(str(CHECKED_VERSION), kind, key)}.json"


def recall(kind: str, key: str) -> Any:
    """What was remembered of `kind` under `key`, or None."""
    entry = _entry(kind, key)
    if entry is None:
        return None
    try:
        return json.loads(entry.read_text())
    except (OSError, ValueError):
        return None


def recall_texts(kind: str, key: str) -> dict[str, str]:
    """A remembered mapping of texts to texts (anything else there counts as nothing)."""
    found = recall(kind, key)
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def remember(kind: str, key: str, payload: Any) -> None:
    """Keep `payload` of `kind` under `key` (written whole, or not at all)."""
    entry = _entry(kind, key)
    if entry is None:
        return
    with contextlib.suppress(OSError):
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload))
        os.replace(temporary, entry)
