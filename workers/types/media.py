"""Running the media tools (espeak-ng, sox, ffmpeg, ffprobe) from a handler.

A tool runs as a child process of the worker, so it inherits the worker's memory limit
(RLIMIT_AS, the memory budget of its job type). It is killed when the job is cancelled,
when its lease is lost, or when the handler's task is cancelled (timeout, shutdown).
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pgcue.workers.runtime.context import JobContext

STDERR_LINES = 20  # kept for the error message when a tool fails


class ToolFailed(RuntimeError):
    """A tool exited with a non-zero status; the message ends with its last stderr lines."""

    def __init__(self, tool: str, returncode: int, stderr: str) -> None:
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{tool} exited with status {returncode}: {stderr.strip()[-800:] or '(no output)'}")


class ToolMissing(RuntimeError):
    pass


def require(tool: str) -> str:
    """The tool's path; a clear error naming the Debian package when it is not installed."""
    path = shutil.which(tool)
    if path is None:
        package = {"ffprobe": "ffmpeg"}.get(tool, tool)
        raise ToolMissing(f"{tool} is not installed (apt-get install {package})")
    return path


async def run(
    argv: Sequence[str],
    ctx: JobContext | None = None,
    *,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run `argv` to completion and return its stdout (when `on_line` is None).

    With `ctx`, a cancellation request kills the tool and raises JobCancelled (or LeaseLost)
    through ctx.checkpoint(). Raises ToolFailed on a non-zero exit."""
    argv = [require(argv[0]), *argv[1:]]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    err_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
    out: list[str] = []

    async def read_out() -> None:
        async for raw in stdout:
            line = raw.decode(errors="replace")
            if on_line is not None:
                on_line(line.rstrip("\n"))
            else:
                out.append(line)

    async def read_err() -> None:
        async for raw in stderr:
            err_tail.append(raw.decode(errors="replace").rstrip())

    async def finish() -> int:
        await asyncio.gather(read_out(), read_err())
        return await proc.wait()

    work = asyncio.create_task(finish())
    cancelled = asyncio.create_task(ctx.wait_cancelled()) if ctx is not None else None
    try:
        waiting: set[asyncio.Task[Any]] = {work} if cancelled is None else {work, cancelled}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            _kill(proc)
            await asyncio.wait_for(asyncio.shield(work), 10)
            assert ctx is not None
            await ctx.checkpoint()  # raises JobCancelled or LeaseLost
        returncode = work.result()
    finally:
        if cancelled is not None:
            cancelled.cancel()
        if proc.returncode is None:
            _kill(proc)
            try:
                await asyncio.wait_for(asyncio.shield(work), 10)
            except BaseException:
                pass
    if returncode != 0:
        raise ToolFailed(Path(argv[0]).name, returncode, "\n".join(err_tail))
    return "".join(out)


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.kill()
    except ProcessLookupError:
        pass


async def probe(path: Path) -> dict[str, Any]:
    """Media facts from ffprobe: duration (s), size (bytes), and width/height when there is video."""
    text = await run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
    )
    info = json.loads(text)
    fmt = info.get("format", {})
    size = int(fmt.get("size") or 0)
    facts: dict[str, Any] = {
        "duration": round(float(fmt.get("duration", 0.0)), 3),
        "size": size,
        "format": fmt.get("format_name"),
    }
    for stream in info.get("streams", []):
        if stream.get("codec_type") == "video" and "width" not in facts:
            facts.update(width=stream["width"], height=stream["height"], videoCodec=stream.get("codec_name"))
        elif stream.get("codec_type") == "audio" and "sampleRate" not in facts:
            facts.update(sampleRate=int(stream.get("sample_rate", 0)), audioCodec=stream.get("codec_name"))
    return facts
