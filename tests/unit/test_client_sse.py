"""The client's SSE decoder (pgcue.client.sse) against the standard's rules, fed in the
awkward pieces a network delivers."""

from __future__ import annotations

from pgcue.client.sse import Decoder, Frame


def feed_all(chunks: list[bytes], last_id: str | None = None) -> list[Frame]:
    decoder = Decoder(last_id)
    out: list[Frame] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def bytewise(text: bytes) -> list[bytes]:
    return [text[i : i + 1] for i in range(len(text))]


STREAM = (
    b"retry: 1000\nid: 0:1:1::\n\n"
    b": keep-alive\n\n"
    b'id: 5:10:10::\nevent: job:output\ndata: {"text": "a\\u2028b \xe2\x80\xa8 caf\xc3\xa9"}\n\n'
    b"id: 6:10:10::\nevent: job:status\ndata: one\ndata: two\n\n"
)


def test_frames_ids_retry_and_comments() -> None:
    frames = feed_all([STREAM])
    assert frames == [
        Frame(event="", data=None, id="0:1:1::", retry=1000),  # the opening frame: no event, a cursor
        Frame(event="job:output", data='{"text": "a\\u2028b \u2028 café"}', id="5:10:10::", retry=None),
        Frame(event="job:status", data="one\ntwo", id="6:10:10::", retry=None),
    ]


def test_any_split_of_the_bytes_gives_the_same_frames() -> None:
    """Chunks end anywhere: inside a line, between CR and LF, inside a UTF-8 character."""
    whole = feed_all([STREAM])
    assert feed_all(bytewise(STREAM)) == whole
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert feed_all([crlf]) == whole
    assert feed_all(bytewise(crlf)) == whole
    assert feed_all([STREAM.replace(b"\n", b"\r")]) == whole  # lone CRs end lines too
    assert feed_all(bytewise(STREAM.replace(b"\n", b"\r"))) == whole


def test_u2028_inside_data_is_no_line_break() -> None:
    """msgspec writes U+2028 raw in JSON strings; str.splitlines would cut the line there."""
    (frame,) = feed_all(["data: x\u2028y\u0085z\n\n".encode()])
    assert frame.data == "x\u2028y\u0085z"


def test_the_last_id_persists_and_an_unfinished_frame_is_dropped() -> None:
    frames = feed_all([b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: never finished\n"])
    assert [(f.data, f.id) for f in frames] == [("a", "7"), ("b", "7")]
    assert feed_all([b"data: c\n\n"], last_id="41")[0].id == "41"  # resumed: the id it resumed from


def test_the_standards_odd_fields() -> None:
    frames = feed_all([b"\xef\xbb\xbfdata\n\ndata:no space\nretry: soon\nunknown: x\nid: a\x00b\n\n"])
    assert frames == [
        Frame(event="", data="", id=None, retry=None),  # a field with no colon has the empty value
        Frame(event="", data="no space", id=None, retry=None),  # a bad retry and an id with NUL are ignored
    ]
