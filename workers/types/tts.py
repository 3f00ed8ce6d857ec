"""tts: text to speech with espeak-ng, rendered segment by segment and merged with sox.

Payload: {"text": "...", "voice": "en" (espeak-ng voice), "speed": 175 (words per minute,
80–450), "format": "wav" | "mp3", "segmentChars": 400}

Long text is split at sentence ends into segments of at most `segmentChars` characters.
Each segment is rendered in turn (progress after each, a cancellation checkpoint between
them) into the job's folder under a name that depends on its text, voice and speed, and
renamed there when complete, so a retried attempt (after a crash, say) renders only the
segments the last one did not finish. The merged file is published under a temporary name
and renamed; the segments are removed afterwards.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from typing import Annotated, Literal

import msgspec

from pgcue.core.artifacts import PART
from pgcue.workers.runtime.context import JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type
from pgcue.workers.types import media

MAX_TEXT = 200_000
DEFAULT_SEGMENT = 400
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n{2,}")
SEGMENTS = "segments"


class TtsPayload(msgspec.Struct, rename="camel", kw_only=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, description="what to say")]
    voice: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_+/-]{1,60}$", description="an espeak-ng voice")] = "en"
    speed: Annotated[int, msgspec.Meta(ge=80, le=450, description="words per minute")] = 175
    format: Literal["wav", "mp3"] = "wav"
    segment_chars: Annotated[int, msgspec.Meta(ge=20, le=5000)] = DEFAULT_SEGMENT


def split_text(text: str, limit: int) -> list[str]:
    """Sentences packed into segments of at most `limit` characters (a longer sentence is cut
    at spaces)."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    segments: list[str] = []
    for piece in pieces:
        if segments and len(segments[-1]) + 1 + len(piece) <= limit:
            segments[-1] += " " + piece
        else:
            segments.append(piece)
    return segments


@job_type(
    "tts",
    plan="free",
    concurrency=2,
    memory_mb=1024,
    timeout_seconds=30 * 60,
    payload=TtsPayload,
    description="text-to-speech rendering and merge",
)
async def tts(ctx: JobContext) -> Result:
    options = ctx.payload_as(TtsPayload)
    text, voice, speed, fmt, segment_chars = (
        options.text,
        options.voice,
        options.speed,
        options.format,
        options.segment_chars,
    )
    if not text.strip():
        raise PermanentError("payload.text must not be blank")
    folder = await ctx.artifacts.begin()
    work = folder / SEGMENTS
    work.mkdir(exist_ok=True)
    segments = split_text(text, segment_chars)
    await ctx.stage("speak", segments=len(segments))
    files = []
    reused = 0
    for i, segment in enumerate(segments):
        await ctx.checkpoint()
        digest = hashlib.sha256(f"{voice}\0{speed}\0{segment}".encode()).hexdigest()[:12]
        done = work / f"{i:05d}-{digest}.wav"
        if done.exists():
            reused += 1
        else:
            source = work / f"{i:05d}.txt{PART}"
            source.write_text(segment)
            temp = work / f"{i:05d}.wav{PART}"
            try:
                await media.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(temp), "-f", str(source)], ctx)
            except media.ToolFailed as exc:
                if "does not exist" in exc.stderr:
                    raise PermanentError(f"espeak-ng has no voice {voice!r} (list them: espeak-ng --voices)") from None
                raise
            finally:
                source.unlink(missing_ok=True)
            temp.replace(done)
        files.append(done)
        ctx.progress(90 * (i + 1) / len(segments), f"segment {i + 1} of {len(segments)}")
        ctx.output(f"segment {i + 1} of {len(segments)}: {segment[:60]}\n")
    await ctx.checkpoint()
    await ctx.stage("merge")
    name = f"speech.{fmt}"
    async with ctx.artifacts.writing(name) as out:
        merged = out if fmt == "wav" else work / f"merged.wav{PART}"
        if len(files) == 1:
            shutil.copyfile(files[0], merged)
        else:
            await media.run(["sox", *map(str, files), "-t", "wav", str(merged)], ctx)
        if fmt == "mp3":
            encode = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(merged)]
            await media.run([*encode, "-codec:a", "libmp3lame", "-q:a", "4", "-f", "mp3", str(out)], ctx)
            merged.unlink(missing_ok=True)
        facts = await media.probe(out)
    shutil.rmtree(work, ignore_errors=True)
    ctx.output(f"merged {len(files)} segment(s) into {name}: {facts['duration']:.1f} s of audio\n")
    ctx.progress(100, "done")
    result = {
        "duration": facts["duration"],
        "size": facts["size"],
        "format": fmt,
        "contentType": "audio/wav" if fmt == "wav" else "audio/mpeg",
        "sampleRate": facts.get("sampleRate"),
        "segments": len(segments),
        "segmentsReused": reused,
        "voice": voice,
        "speed": speed,
    }
    return Result(result, ctx.artifacts.key(name))
