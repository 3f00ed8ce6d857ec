"""Where jobs keep the files they produce: one folder per job under the artifacts directory.

A job's artifact is named by a key, "<job id>/<file name>", and the key is what a job stores
in resultPath, so the API (which serves it) and the workers (which write it) agree on a
file without sharing a mount path. Files are written under a temporary name and renamed
when complete: a reader never sees half a file, and a crashed attempt leaves only temporary
names, which the next attempt clears.

`ArtifactStore` is the interface; `LocalArtifacts` keeps files on a local (or mounted) disk.
An object-storage store would write the temporary file locally and upload it in `publish`.
"""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

PART = ".part-"  # temporary names contain this; nothing else does
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Types mimetypes may not know on a slim system; the ones browsers need to play media.
_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".mp4": "video/mp4",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
}


class ArtifactError(ValueError):
    """A key or name that does not name a file inside the store."""


def safe_name(name: str, default: str = "file") -> str:
    """A file name that stays inside its folder: no separators, no leading dots."""
    cleaned = _SAFE_NAME.sub("_", os.path.basename(name.strip())).lstrip(".")[:120]
    return cleaned or default


def content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class ArtifactStore(Protocol):
    def key(self, job_id: uuid.UUID, name: str) -> str: ...

    def begin(self, job_id: uuid.UUID) -> Path:
        """The job's working folder, cleared of a previous attempt's temporary files."""
        ...

    def writing(self, job_id: uuid.UUID, name: str) -> AbstractContextManager[Path]:
        """A temporary path to write `name` to; published when the block ends without error,
        removed otherwise."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file behind `key`, if this store can serve it from disk."""
        ...

    def discard(self, job_id: uuid.UUID) -> None:
        """Remove everything the job wrote."""
        ...


class LocalArtifacts:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def folder(self, job_id: uuid.UUID) -> Path:
        return self.root / str(job_id)

    def key(self, job_id: uuid.UUID, name: str) -> str:
        return f"{job_id}/{safe_name(name)}"

    def path(self, job_id: uuid.UUID, name: str) -> Path:
        return self.folder(job_id) / safe_name(name)

    def begin(self, job_id: uuid.UUID) -> Path:
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.rglob(f"*{PART}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return folder

    @contextmanager
    def writing(self, job_id: uuid.UUID, name: str) -> Iterator[Path]:
        final = self.path(job_id, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}{PART}{uuid.uuid4().hex[:8]}")
        try:
            yield temp
            if not temp.exists():
                raise ArtifactError(f"nothing was written to {final.name}")
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        job, _, name = key.partition("/")
        try:
            uuid.UUID(job)
        except ValueError:
            return None
        if not name or safe_name(name) != name:
            return None
        path = self.root / job / name
        return path if path.is_file() else None

    def discard(self, job_id: uuid.UUID) -> None:
        # Only a folder that is not there is nothing to do. Any other error (the artifacts
        # directory unreadable, not a directory, a read-only disk) is raised: the caller
        # must not believe the folder gone (the sweeper would forget the deletion, and the
        # files would outlive their job for good).
        try:
            shutil.rmtree(self.folder(job_id))
        except FileNotFoundError:
            pass

    def files(self, job_id: uuid.UUID) -> list[str]:
        """Names of the job's complete files (temporary ones excluded)."""
        folder = self.folder(job_id)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and PART not in p.name)
