"""What every part of reading a manifest shares: the document, the folder its relative
paths start from, the paths the JSON Schema already rejected, and one list of problems,
each located in the document (loader/manifest.py, loader/targets.py)."""

from __future__ import annotations

from pathlib import Path

from loader.model import Problem
from loader.yamlsrc import JsonPath, YamlDocument


class ManifestPart:
    def __init__(
        self,
        document: YamlDocument,
        base: Path,
        rejected: frozenset[JsonPath],
        problems: list[Problem],
    ) -> None:
        self.doc = document
        self.base = base
        # Paths the schema rejected: a part holding one is skipped, never reported twice.
        self.rejected = rejected
        self.problems = problems  # shared by every part of one reading

    def error(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        """A problem at `path` (at its key, with `key`: the thing named is what is wrong)."""
        position = self.doc.key_position(path) if key else self.doc.position(path)
        self.problems.append(Problem(position, message))

    def is_rejected(self, path: JsonPath) -> bool:
        """Whether the schema rejected the part at `path` or anything inside it."""
        size = len(path)
        return any(bad[:size] == path for bad in self.rejected)

    def is_readable(self, path: JsonPath) -> bool:
        """Whether the part at `path` can be built: the schema accepted it and it holds no
        undefined variable (each is reported once, as such, and its text is no value)."""
        return not self.is_rejected(path) and not self.doc.unresolved(path)

    def resolve_path(self, text: str) -> Path:
        return (self.base / text).resolve()
