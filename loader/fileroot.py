"""Where a manifest may read files from: its own folder, or the `data_root` it names.

A manifest is often written by someone else (a pull request, a template); the files it
names are read and parts of them quoted in messages. So data files, the setup config and
CA bundles must resolve (symbolic links followed) inside one root folder, which is the
manifest's folder unless the manifest opts into another with `data_root:`; the kernel's
pseudo-filesystems (`/proc`, `/sys`, `/dev`: `/proc/self/environ` holds the environment's
secrets and reports itself as a regular file of size 0) are refused whatever the root.
A glob is walked from its fixed leading folders only, never above the root, and gives up
after a bounded number of directory entries instead of walking a whole file system.
Standard library only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

MAX_GLOB_ENTRIES = 200_000  # directory entries one glob may look at
SYSTEM_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))
_MAGIC = re.compile(r"[*?\[]")


class OutsideRoot(ValueError):
    """A path the manifest may not read; the message says why and what to do."""


@dataclass(frozen=True)
class FileRoot:
    base: Path  # the manifest's folder: relative paths start here
    root: Path  # every file read must lie inside it (resolved)
    written: str | None  # data_root as the manifest wrote it; None: the manifest's folder

    @classmethod
    def of(cls, manifest_folder: Path, data_root: object) -> FileRoot:
        base = manifest_folder.absolute()
        if isinstance(data_root, str) and data_root:
            return cls(base, (base / data_root).resolve(), data_root)
        return cls(base, base.resolve(), None)

    def check(self, path: Path, shown: str) -> Path:
        """`path` resolved, or OutsideRoot naming `shown` (as the manifest wrote it)."""
        resolved = path.resolve()
        for system in SYSTEM_FOLDERS:
            if resolved == system or system in resolved.parents:
                raise OutsideRoot(f"{shown} is in {system}, which is never read")
        if resolved != self.root and self.root not in resolved.parents:
            if self.written is not None:
                raise OutsideRoot(f"{shown} is outside data_root '{self.written}'")
            raise OutsideRoot(
                f"{shown} is outside the manifest's folder: set data_root to a folder "
                "that holds it to read it"
            )
        return resolved

    def resolve(self, text: str) -> Path:
        """A path the manifest wrote (relative to the manifest's folder), checked."""
        return self.check(self.base / text, text)

    def glob(self, pattern: str) -> list[Path]:
        """The regular files a glob matches, sorted and checked (`**` spans folders).

        As glob.glob does: names starting with `.` match only a part starting with `.`;
        symbolic links to folders are not followed by `**` (a link loop cannot trap it).
        """
        parts = Path(pattern).parts
        fixed = 0
        while fixed < len(parts) - 1 and not _MAGIC.search(parts[fixed]):
            fixed += 1
        start = self.check(self.base.joinpath(*parts[:fixed]), pattern)
        walker = _Walker(pattern)
        found = walker.walk(start, list(parts[fixed:]))
        return sorted({self.check(path, pattern) for path in found})


class _Walker:
    """One glob's walk, counting the directory entries it looks at."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.seen = 0

    def entries(self, folder: Path) -> list[os.DirEntry[str]]:
        if any(folder == s or s in folder.parents for s in SYSTEM_FOLDERS):
            return []
        try:
            with os.scandir(folder) as scan:
                listed = list(scan)
        except OSError:  # unreadable or gone: as glob.glob, it matches nothing there
            return []
        self.seen += len(listed)
        if self.seen > MAX_GLOB_ENTRIES:
            raise OutsideRoot(
                f"the glob '{self.pattern}' looks at more than {MAX_GLOB_ENTRIES:,} files and "
                "folders: narrow it"
            )
        return listed

    def walk(self, folder: Path, parts: list[str]) -> list[Path]:
        if not parts:
            return [folder] if folder.is_file() else []
        head, rest = parts[0], parts[1:]
        if head == "**":
            # Any number of folders, none included; last in a pattern, every file below.
            found = self.walk(folder, rest) if rest else []
            for entry in self.entries(folder):
                if entry.name.startswith("."):
                    continue
                if not rest and entry.is_file():
                    found.append(Path(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    found += self.walk(Path(entry.path), parts)
            return found
        if not _MAGIC.search(head):
            return self.walk(folder / head, rest)
        found = []
        for entry in self.entries(folder):
            hidden = entry.name.startswith(".") and not head.startswith(".")
            if not hidden and fnmatchcase(entry.name, head):
                found += self.walk(Path(entry.path), rest)
        return found


__all__ = ["MAX_GLOB_ENTRIES", "FileRoot", "OutsideRoot"]
