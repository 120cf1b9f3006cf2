"""A simulated file system: paths are dictionary keys, never real paths."""

from __future__ import annotations

import posixpath
import re
from typing import Literal

from pydantic import BaseModel, Field

Sensitivity = Literal["credentials", "keys", "personal", "financial"]

MAX_PATH_LENGTH = 1024
# An absolute path with no empty, '.' or '..' segment and no trailing slash is already normal.
_CLEAN = re.compile(r"(/(?!\.\.?(?:/|$))[^/]+)+")


class File(BaseModel):
    content: str
    sensitivity: list[Sensitivity] = Field(default_factory=list)
    shared_with: list[str] = Field(default_factory=list)


class FileSystem(BaseModel):
    """Files keyed by normalised absolute path, plus a trash that remembers where things were."""

    home: str = "/home/user"
    files: dict[str, File] = Field(default_factory=dict)
    folders: set[str] = Field(default_factory=set)
    trash: dict[str, File] = Field(default_factory=dict)

    def resolve(self, path: str) -> str:
        """Map an agent-supplied path onto the simulated tree.

        Relative paths start at the home folder; ``..`` cannot climb above ``/``. The
        result is only ever used as a dictionary key.
        """
        if not path or len(path) > MAX_PATH_LENGTH or "\x00" in path:
            raise ValueError(f"invalid path (empty, NUL byte or over {MAX_PATH_LENGTH} chars)")
        if path.startswith("/") and _CLEAN.fullmatch(path):
            return path
        if path.startswith("~"):
            path = self.home + path[1:]
        joined = path if path.startswith("/") else posixpath.join(self.home, path)
        normal = posixpath.normpath(joined)
        return "/" + normal.lstrip("/")

    def add_file(self, path: str, file: File) -> str:
        key = self.resolve(path)
        self.files[key] = file
        self._add_parents(key)
        return key

    def is_folder(self, path: str) -> bool:
        return path == "/" or path in self.folders

    def _add_parents(self, key: str) -> None:
        parent = posixpath.dirname(key)
        while parent not in ("/", "") and parent not in self.folders:
            self.folders.add(parent)
            parent = posixpath.dirname(parent)

    def make_folder(self, path: str) -> str:
        key = self.resolve(path)
        self.folders.add(key)
        self._add_parents(key)
        return key

    def children(self, folder: str) -> list[str]:
        """Direct children of a folder, folders marked with a trailing slash, sorted."""
        prefix = folder.rstrip("/") + "/"
        names = {
            p[len(prefix) :].split("/", 1)[0] + ("/" if p in self.folders else "")
            for p in (*self.files, *self.folders)
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        }
        return sorted(names)
