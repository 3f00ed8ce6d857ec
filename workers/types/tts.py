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
from typing import Any

from pgcue.core.artifacts import PART
from pgcue.workers.runtime.artifacts import store
from pgcue.workers.runtime.context import JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type
from pgcue.workers.types import media

MAX_TEXT = 200_000
DEFAULT_SEGMENT = 400
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n{2,}")
_VOICE = re.compile(r"^[A-Za-z0-9_+/-]{1,60}$")
SEGMENTS = "segments"


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


def _options(payload: Any) -> tuple[str, str, int, str, int]:
    if not isinstance(payload, dict):
        raise PermanentError('tts needs a payload object: {"text": "...", "voice": "en", "speed": 175}')
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PermanentError("payload.text must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise PermanentError(f"payload.text is {len(text)} characters; the limit is {MAX_TEXT}")
    voice = str(payload.get("voice", "en"))
    if not _VOICE.match(voice):
        raise PermanentError(f"payload.voice {voice!r} is not an espeak-ng voice name")
    try:
        speed = int(payload.get("speed", 175))
        segment_chars = int(payload.get("segmentChars", DEFAULT_SEGMENT))
    except (TypeError, ValueError):
        raise PermanentError("payload.speed and payload.segmentChars must be integers") from None
    if not 80 <= speed <= 450:
        raise PermanentError("payload.speed is words per minute, from 80 to 450")
    if not 20 <= segment_chars <= 5000:
        raise PermanentError("payload.segmentChars must be from 20 to 5000")
    fmt = str(payload.get("format", "wav")).lower()
    if fmt not in ("wav", "mp3"):
        raise PermanentError("payload.format must be wav or mp3")
    return text, voice, speed, fmt, segment_chars


@job_type("tts")
async def tts(ctx: JobContext) -> Result:
    text, voice, speed, fmt, segment_chars = _options(ctx.payload)
    artifacts = store()
    folder = artifacts.begin(ctx.id)
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
    await ctx.checkpoint()
    await ctx.stage("merge")
    name = f"speech.{fmt}"
    with artifacts.writing(ctx.id, name) as out:
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
    return Result(result, artifacts.key(ctx.id, name))
