"""Server-sent events, decoded as the WHATWG HTML standard says, from bytes as they come.

The client reads a stream's bytes itself, instead of through an SSE library's event
iterator, so that every chunk (a keep-alive comment too) returns control to it: that is
how a synchronous wait() keeps its deadline while the server sends nothing but
keep-alives, which an iterator of events would swallow while it blocks.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched block of fields. `id` is the stream's last event id after it (an
    `id:` persists across frames, as in the standard); `event` is "" when none was named."""

    event: str
    data: str | None  # None: the block had no data line (it dispatches no event)
    id: str | None
    retry: int | None


class Decoder:
    """Feed it a stream's bytes; it returns the frames they complete. Lines end with CRLF,
    LF or CR (not U+2028 or the other separators str.splitlines knows), comments are
    dropped, and an unfinished frame at the end of the stream is discarded."""

    def __init__(self, last_id: str | None = None) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""
        self._started = False
        self._cr = False  # the last chunk ended with CR: a LF opening the next one belongs to it
        self.last_id = last_id
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self._retry: int | None = None
        self._fields = False

    def feed(self, chunk: bytes) -> list[Frame]:
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if not text:
            return []
        if self._cr and text.startswith("\n"):
            text = text[1:]
        self._cr = text.endswith("\r")
        buffer = self._buffer + text
        if "\r" in buffer:  # CRLF and a lone CR end lines too; a CR ending the chunk has been handled
            buffer = buffer.replace("\r\n", "\n").replace("\r", "\n")
        lines = buffer.split("\n")
        self._buffer = lines.pop()  # the unfinished line, if any
        frames: list[Frame] = []
        for line in lines:
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)
        return frames

    def _line(self, line: str) -> Frame | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        else:
            return None
        self._fields = True
        return None

    def _dispatch(self) -> Frame | None:
        if not self._fields:
            return None
        frame = Frame(
            event=self._event,
            data="\n".join(self._data) if self._has_data else None,
            id=self.last_id,
            retry=self._retry,
        )
        self._event = ""
        self._data = []
        self._has_data = False
        self._retry = None
        self._fields = False
        return frame
