"""Where an artifact download goes: bytes in memory, a path (written under a temporary
name and renamed when whole, so a reader never sees half a file), or an open binary file."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeAlias

ByteRange: TypeAlias = tuple[int, int | None]  # first and last byte, inclusive; last None: to the end
Destination: TypeAlias = str | os.PathLike[str] | IO[bytes]


@contextmanager
def open_destination(to: Destination | None) -> Iterator[tuple[IO[bytes], Callable[[int], bytes | int]]]:
    """A sink to write the download to, and what the call returns once it is written."""
    if to is None:
        buffer = io.BytesIO()
        yield buffer, lambda _n: buffer.getvalue()
    elif isinstance(to, str | os.PathLike):
        path = Path(to)
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        done = False
        with open(part, "wb") as f:
            try:
                yield f, lambda n: n
                done = True
            finally:
                if not done:
                    f.close()
                    part.unlink(missing_ok=True)
        if done:
            os.replace(part, path)
    else:
        yield to, lambda n: n
