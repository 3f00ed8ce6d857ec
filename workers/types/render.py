"""render: a composition to an MP4 with ffmpeg.

Payload:
    {"width": 1280, "height": 720, "fps": 25,
     "scenes": [{"color": "#1d3557", "duration": 2.0, "caption": "Episode 12"},
                {"image": "<artifact key>", "duration": 3.0}],
     "audio": "<artifact key>",                      (optional; padded or cut to the video)
     "captions": [{"text": "Hello", "start": 0.5, "end": 2.0}]}   (optional)

Images and audio are artifacts of earlier jobs ("<job id>/<file>", e.g. a
resource-download or a tts result), so a render reads nothing outside the artifacts
directory. ffmpeg reports its progress on stdout (`-progress pipe:1`); cancelling kills it
and the partial file is removed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated, Any

import msgspec

from pgcue.core.artifacts import PART
from pgcue.workers.runtime.context import JobArtifacts, JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type
from pgcue.workers.types import media

MAX_SIDE = 3840
MAX_SECONDS = 4 * 3600
MAX_SCENES = 500
_COLOR = re.compile(r"^(#[0-9A-Fa-f]{6}|#[0-9A-Fa-f]{8}|[A-Za-z]{3,20})$")
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]


class Scene(msgspec.Struct, kw_only=True):
    color: Annotated[str, msgspec.Meta(pattern=_COLOR.pattern)] | None = None
    image: Annotated[str, msgspec.Meta(max_length=300, description="an artifact key, <job id>/<file>")] | None = None
    duration: Annotated[float, msgspec.Meta(ge=0.04, le=MAX_SECONDS)] = 2.0
    caption: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class Caption(msgspec.Struct, kw_only=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    start: Seconds = 0.0
    end: Seconds | None = None


class RenderPayload(msgspec.Struct, kw_only=True):
    scenes: Annotated[list[Scene], msgspec.Meta(min_length=1, max_length=MAX_SCENES)]
    width: Annotated[int, msgspec.Meta(ge=16, le=MAX_SIDE)] = 1280
    height: Annotated[int, msgspec.Meta(ge=16, le=MAX_SIDE)] = 720
    fps: Annotated[float, msgspec.Meta(ge=1, le=120)] = 25
    audio: Annotated[str, msgspec.Meta(max_length=300, description="an artifact key, <job id>/<file>")] | None = None
    captions: Annotated[list[Caption], msgspec.Meta(max_length=MAX_SCENES)] = msgspec.field(default_factory=list)


def _number(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{name} must be a number") from None
    if not low <= number <= high:
        raise PermanentError(f"{name} must be from {low:g} to {high:g}")
    return number


async def build_command(
    payload: Any, output: Path, work: Path, artifacts: JobArtifacts
) -> tuple[list[str], float, int, int]:
    """The ffmpeg command line for `payload`, the total duration and the size. Caption texts
    are written to files in `work` (drawtext reads them, so no text needs escaping). The
    images and audio it names must be artifacts of the job's own channel."""
    if not isinstance(payload, dict) or not isinstance(payload.get("scenes"), list) or not payload["scenes"]:
        raise PermanentError('render needs {"scenes": [{"color": "#203040", "duration": 2}, ...]}')
    width = int(_number(payload.get("width", 1280), "width", 16, MAX_SIDE)) // 2 * 2
    height = int(_number(payload.get("height", 720), "height", 16, MAX_SIDE)) // 2 * 2
    fps = _number(payload.get("fps", 25), "fps", 1, 120)
    scenes = payload["scenes"]
    if len(scenes) > MAX_SCENES:
        raise PermanentError(f"at most {MAX_SCENES} scenes")

    inputs: list[str] = []
    chains: list[str] = []
    captions: list[tuple[str, float, float]] = []
    t = 0.0
    for i, scene in enumerate(scenes):
        if not isinstance(scene, dict):
            raise PermanentError(f"scenes[{i}] must be an object")
        duration = _number(scene.get("duration", 2), f"scenes[{i}].duration", 0.04, MAX_SECONDS)
        if "image" in scene:
            image = await artifacts.open(scene["image"], f"scenes[{i}].image")
            inputs += ["-loop", "1", "-framerate", f"{fps:g}", "-t", f"{duration:.3f}", "-i", str(image)]
            chains.append(
                f"[{i}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
                f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps:g},format=yuv420p[v{i}]"
            )
        else:
            color = str(scene.get("color", "black"))
            if not _COLOR.match(color):
                raise PermanentError(f"scenes[{i}].color must be #rrggbb or a colour name")
            inputs += ["-f", "lavfi", "-t", f"{duration:.3f}", "-i", f"color=c={color}:s={width}x{height}:r={fps:g}"]
            chains.append(f"[{i}:v]setsar=1,format=yuv420p[v{i}]")
        if scene.get("caption"):
            captions.append((str(scene["caption"]), t, t + duration))
        t += duration
    total = t
    if total > MAX_SECONDS:
        raise PermanentError(f"the composition lasts {total:.0f}s; the limit is {MAX_SECONDS}s")
    for j, cap in enumerate(payload.get("captions") or []):
        if not isinstance(cap, dict) or not cap.get("text"):
            raise PermanentError(f"captions[{j}] needs text, start and end")
        start = _number(cap.get("start", 0), f"captions[{j}].start", 0, total)
        end = _number(cap.get("end", total), f"captions[{j}].end", start, total)
        captions.append((str(cap["text"]), start, end))

    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(scenes)))
    graph += f"concat=n={len(scenes)}:v=1:a=0[vcat]"
    last = "vcat"
    fontsize = max(12, height // 14)
    for k, (text, start, end) in enumerate(captions):
        name = f"caption-{k}.txt"
        (work / name).write_text(text[:500])
        graph += (
            f";[{last}]drawtext=textfile={name}:fontcolor=white:fontsize={fontsize}:box=1:boxcolor=black@0.5:"
            f"boxborderw={fontsize // 3}:x=(w-text_w)/2:y=h-text_h-{fontsize}:"
            f"enable='between(t,{start:.3f},{end:.3f})'[c{k}]"
        )
        last = f"c{k}"
    maps = ["-map", f"[{last}]"]
    audio = payload.get("audio")
    if audio:
        inputs += ["-i", str(await artifacts.open(audio, "audio"))]
        graph += f";[{len(scenes)}:a]apad[aout]"
        maps += ["-map", "[aout]", "-c:a", "aac", "-b:a", "128k"]
    argv = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-y",
        *inputs,
        "-filter_complex",
        graph,
        *maps,
        "-t",
        f"{total:.3f}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-r",
        f"{fps:g}",
        "-movflags",
        "+faststart",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.25",
        "-f",
        "mp4",
        str(output),
    ]
    return argv, total, width, height


@job_type(
    "render",
    plan="paid",
    concurrency=1,
    memory_mb=8192,
    timeout_seconds=2 * 3600,
    payload=RenderPayload,
    description="composition to MP4 export",
    deploy_as="job",  # hours long: a Kubernetes Job per render, never stopped by a scale-in
)
async def render(ctx: JobContext) -> Result:
    ctx.payload_as(RenderPayload)  # the schema's checks, before any work
    folder = await ctx.artifacts.begin()
    work = folder / f"work{PART}{ctx.attempt}"
    work.mkdir(exist_ok=True)
    name = "render.mp4"
    try:
        async with ctx.artifacts.writing(name) as out:
            argv, total, width, height = await build_command(ctx.payload, out, work, ctx.artifacts)
            await ctx.stage("encode", duration=total, width=width, height=height)

            def on_line(line: str) -> None:
                key, _, value = line.partition("=")
                if key == "out_time_us" and value.strip().isdigit():
                    done = int(value) / 1_000_000
                    ctx.progress(min(99, 100 * done / total), f"{done:.1f}s of {total:.1f}s encoded")

            try:
                await media.run(argv, ctx, cwd=work, on_line=on_line)
            except media.ToolFailed as exc:
                # Bad input (an unreadable image, say) will fail the same way every time.
                if any(s in exc.stderr for s in ("Invalid data", "No such file", "Error parsing", "not found")):
                    raise PermanentError(str(exc)) from None
                raise
            facts = await media.probe(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ctx.progress(100, "done")
    return Result(
        {
            "duration": facts["duration"],
            "width": facts.get("width"),
            "height": facts.get("height"),
            "size": facts["size"],
            "contentType": "video/mp4",
        },
        ctx.artifacts.key(name),
    )
