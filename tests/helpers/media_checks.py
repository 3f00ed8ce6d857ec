"""Checks on the artifacts the studio types produce, read by the tools a user would use."""

from __future__ import annotations

import array
import json
import math
import subprocess
from pathlib import Path
from typing import Any


def pcm_stats(path: Path) -> tuple[float, float]:
    """(duration in seconds, RMS level 0–1) of any audio file, decoded by ffmpeg to 16-bit
    mono at 16 kHz."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    samples = array.array("h", raw)
    if not samples:
        return 0.0, 0.0
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768
    return len(samples) / 16000, rms


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
        text=True,
    ).stdout
    return json.loads(out)


def job_files(artifacts: Path, job_id: object) -> list[str]:
    """Every entry in the job's folder, temporary and hidden ones included."""
    folder = artifacts / str(job_id)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []
