"""Hostile input over real HTTP, generated: every class of request an outside probe of the
API found answered with a 500 (invalid UTF-8, deep nesting, huge numbers, timestamps no
one can store, NUL characters, lone surrogates, megabyte strings, malformed job ids), as
tables of inputs × hostile values, sent byte for byte (tests/helpers/rawhttp.py) to the
real app on loopback (the `api` fixture).

For every case: no 5xx; every error is application/problem+json with its status and a
detail; a 4xx (other than a 404 for something that does not exist) names the input at
fault in `field`; an answer comes within ANSWER_WITHIN seconds; a refused request wrote
nothing (jobs, events, channels and keys counted before and after); an accepted enqueue can
be read back and listed; and after each table the caller's and the admin's /api/stats and
/metrics still work (a stored value that breaks a later read is the worst kind of 500).

Bodies that are not JSON text at all (invalid UTF-8, a lone surrogate, nesting no decoder
follows) are refused as `bad-json` without a `field`: the decoder stops before it knows
which field it is in (RFC 8259 §8.1: JSON text is UTF-8 as a whole).

A NUL byte in a header is not HTTP (RFC 9110 §5.5): uvicorn's parser answers
`400 text/plain "Invalid HTTP request received."` and closes before the app sees the
request, so nothing the app does can make that answer problem+json. Those cases
(`parser_may_refuse`) accept exactly that answer, and check the app's answer as any other
if a parser ever lets the request through.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import valid_payload
from tests.helpers import rawhttp
from tests.helpers.apiserver import Api

pytestmark = pytest.mark.timeout(60)

PROBLEM = "application/problem+json"
ANSWER_WITHIN = 10.0  # seconds; no answer by then is a hang
PARSER_REFUSAL = b"Invalid HTTP request received."
MB = 1_000_000
# The handlers' argument names: none of them is an input on the wire, so no `field` may be one.
ARGUMENTS = {"data", "job_id", "channel_id", "job_type", "job_state", "idempotency_key", "last_event_id"}


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    target: str  # path and percent-encoded query, put on the request line as is
    body: bytes | None = None
    who: str | None = "alice"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    field: str | None = None  # a 4xx other than 404 must name this input (or a path inside it)
    or_bad_json: bool = False  # ... or be a bad-json problem: the body is no JSON text, no field is known
    kind: str | None = None  # a 4xx must be this problem type
    detail: str | None = None  # a 4xx's detail must contain this
    statuses: tuple[int, ...] | None = None  # the only statuses allowed (None: any below 500)
    refuse: bool = True  # False: a 2xx is a fine answer too
    parser_may_refuse: bool = False  # bytes HTTP forbids, a URL past 64 KiB: uvicorn's parser may answer first


def names(got: Any, want: str) -> bool:
    """`got` is the field `want` or a path inside it (payload, payload.text, payload[0])."""
    return isinstance(got, str) and (got == want or got.startswith((want + ".", want + "[")))


def judge(case: Case, answer: rawhttp.Answer) -> list[str]:
    """What is wrong with `answer` to `case` (nothing: an empty list)."""
    issues: list[str] = []
    status = answer.status
    if status >= 500:
        issues.append(f"server error {status}")
    if case.statuses is not None and status not in case.statuses:
        issues.append(f"status {status}, expected {'/'.join(map(str, case.statuses))}")
    if case.refuse and status < 400:
        issues.append(f"accepted ({status}) where a refusal was due")
    if status < 400:
        return issues
    if case.parser_may_refuse and status == 400 and answer.body == PARSER_REFUSAL:
        return issues  # refused by the HTTP parser before the app ran (see the module docstring)
    if answer.content_type != PROBLEM:
        return [*issues, f"error {status} is {answer.content_type or 'without a content type'}, not {PROBLEM}"]
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return [*issues, "the problem body is not JSON"]
    if doc.get("status") != status or not doc.get("detail"):
        issues.append("the problem lacks its status or a detail")
    if doc.get("field") in ARGUMENTS:
        issues.append(f"field {doc['field']!r} names a handler's argument, not an input")
    bad_json = str(doc.get("type", "")).endswith("/bad-json")
    if case.field and status != 404 and not names(doc.get("field"), case.field) and not (case.or_bad_json and bad_json):
        issues.append(f"field is {doc.get('field')!r}, not {case.field!r}")
    if case.kind and not str(doc.get("type", "")).endswith("/" + case.kind):
        issues.append(f"problem type {doc.get('type')!r}, not {case.kind!r}")
    if case.detail and case.detail not in str(doc.get("detail")):
        issues.append(f"detail {doc.get('detail')!r} does not say {case.detail!r}")
    return issues


class Runner:
    """Sends cases one at a time (so before/after counts belong to one request) and collects
    every failure; `check()` asserts none, listing them all."""

    def __init__(self, api: Api, pool: asyncpg.Pool) -> None:
        self.api = api
        self.pool = pool
        self.port = urlsplit(api.url).port or 80
        self.failures: list[str] = []
        self.sent = 0

    async def counts(self) -> tuple[int, ...]:
        row = await self.pool.fetchrow(
            "SELECT (SELECT count(*) FROM pgcue.jobs), (SELECT count(*) FROM pgcue.job_events), "
            "(SELECT count(*) FROM pgcue.channels), (SELECT count(*) FROM pgcue.api_keys)"
        )
        assert row is not None
        return tuple(row)

    async def send(self, case: Case) -> rawhttp.Answer | str:
        headers = []
        if case.who is not None:
            headers.append((b"Authorization", b"Bearer " + self.api.keys[case.who].encode()))
        if case.body is not None:
            headers.append((b"Content-Type", b"application/json"))
        headers += list(case.headers)
        try:
            return await rawhttp.request(
                self.port, case.method, case.target, headers=headers, body=case.body, timeout=ANSWER_WITHIN
            )
        except TimeoutError:
            return f"HANG: no answer within {ANSWER_WITHIN} s"
        except rawhttp.NoAnswer as exc:
            return str(exc)

    async def run(self, cases: Iterable[Case]) -> None:
        for case in cases:
            self.sent += 1
            before = await self.counts()
            answer = await self.send(case)
            if isinstance(answer, str):
                self.failures.append(f"{case.label}: {answer}")
                continue
            issues = judge(case, answer)
            after = await self.counts()
            if answer.status >= 400 and after != before:
                issues.append(f"refused, yet something was written (jobs, events, channels, keys {before} -> {after})")
            if answer.status < 300 and case.method == "POST" and case.target == "/api/jobs":
                issues += await self.read_back(case, answer)
            if issues:
                shown = answer.body[:240] if not answer.streaming else b"<stream>"
                self.failures.append(f"{case.label}: {'; '.join(issues)}  [{answer.status} {shown!r}]")

    async def read_back(self, case: Case, answer: rawhttp.Answer) -> list[str]:
        """An accepted job can be read and listed by whoever enqueued it."""
        job = json.loads(answer.body)["job"]
        async with self.api.client(case.who) as c:
            one = await c.get(f"/api/jobs/{job['id']}")
            page = await c.get("/api/jobs", params={"channelId": job["channelId"], "limit": 200})
        issues = []
        if one.status_code != 200:
            issues.append(f"accepted, but GET of the job is {one.status_code}: {one.text[:200]}")
        if page.status_code != 200 or job["id"] not in {j["id"] for j in page.json()["jobs"]}:
            issues.append(f"accepted, but the list is {page.status_code}: {page.text[:200]}")
        return issues

    async def still_healthy(self) -> None:
        """After the table: stats for a tenant and the admin, and the metrics snapshot."""
        for who in ("alice", "admin"):
            async with self.api.client(who) as c:
                r = await c.get("/api/stats")
            if r.status_code != 200:
                self.failures.append(f"afterwards, {who}'s GET /api/stats is {r.status_code}: {r.text[:200]}")
        async with self.api.client() as c:
            text = (await c.get("/metrics")).text
        if "pgcue_database_up 1.0" not in text:
            up = [line for line in text.splitlines() if line.startswith("pgcue_database_up")]
            self.failures.append(f"afterwards, /metrics says {up} while the database is up")

    async def check(self) -> None:
        await self.still_healthy()
        assert self.sent > 0
        assert not self.failures, f"{len(self.failures)} of {self.sent} cases failed:\n" + "\n".join(self.failures)


@pytest.fixture
async def runner(api: Api, pool: asyncpg.Pool) -> Runner:
    return Runner(api, pool)


def json_string(text: str) -> bytes:
    return json.dumps(text).encode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- POST /api/jobs: every body field × hostile values ------------------------------------------

BASE: dict[str, bytes] = {"type": b'"echo"', "channelId": b'"a1"', "payload": b'{"k":"v"}'}


def job_body(fields: dict[str, bytes]) -> bytes:
    """A POST /api/jobs body from JSON fragments (bytes, so that any byte can go in)."""
    merged = {**BASE, **fields}
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in merged.items()) + b"}"


# Where a value goes: (fragments holding it, the field a refusal must name, the slot is a payload)
Slot = tuple[Callable[[bytes], dict[str, bytes]], str, bool]
STRING_SLOTS: dict[str, Slot] = {
    "type": (lambda v: {"type": v}, "type", False),
    "channelId": (lambda v: {"channelId": v}, "channelId", False),
    "uniqueKey": (lambda v: {"uniqueKey": v}, "uniqueKey", False),
    "onConflict": (lambda v: {"uniqueKey": b'"u-1"', "onConflict": v}, "onConflict", False),
    "runAt": (lambda v: {"runAt": v}, "runAt", False),
    "payload key": (lambda v: {"payload": b"{" + v + b":1}"}, "payload", True),
    "payload value": (lambda v: {"payload": b'{"k":' + v + b"}"}, "payload", True),
    "nested payload value": (lambda v: {"payload": b'{"k":[{"w":' + v + b"}]}"}, "payload", True),
}
# (label, a JSON string token, what it is): "nul" a NUL PostgreSQL cannot store, "not-json"
# bytes that make the body no JSON text, "big"/"empty" values only a payload may hold.
HOSTILE_STRINGS: list[tuple[str, bytes, str]] = [
    ("NUL escape", b'"a\\u0000b"', "nul"),
    ("a lone NUL", b'"\\u0000"', "nul"),
    ("NUL then more text", b'"echo\\u0000xyz"', "nul"),
    ("invalid UTF-8 0xff 0xfe", b'"\xff\xfe"', "not-json"),
    ("truncated UTF-8 sequence", b'"ech\xc3"', "not-json"),
    ("overlong UTF-8 for /", b'"\xc0\xaf"', "not-json"),
    ("UTF-8-encoded surrogate", b'"\xed\xa0\x80"', "not-json"),
    ("lone high surrogate escape", b'"\\ud800"', "not-json"),
    ("lone low surrogate escape", b'"x\\udfffy"', "not-json"),
    ("reversed surrogate pair", b'"\\udc00\\ud800"', "not-json"),
    ("raw control byte", b'"a\x01b"', "not-json"),
    ("1 MB string", b'"' + b"x" * MB + b'"', "big"),
    ("empty string", b'""', "empty"),
]
WRONG_TYPES = [b"12", b"null", b"[]", b"{}", b"true", b"1e400"]
# Integers and numbers of every hostile size, per numeric slot; the values a slot may take.
NUMBERS = [
    b"1e400",
    b"-1e400",
    b"1" + b"0" * 5000,
    b"-1" + b"0" * 5000,
    str(2**64).encode(),
    str(2**63).encode(),
    str(-(2**63) - 1).encode(),
    b"1e308",
    b"-1e308",
    b"1.5",
    b"1e-400",
    b"-0",
]
NOT_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"0x10", b"1e", b"01", b"+1"]
NUMBER_SLOTS: dict[str, tuple[Callable[[bytes], dict[str, bytes]], str, set[bytes]]] = {
    "priority": (lambda v: {"priority": v}, "priority", {b"-0", b"1e-400"}),
    "maxAttempts": (lambda v: {"maxAttempts": v}, "maxAttempts", set()),
    "payload value": (
        lambda v: {"payload": b'{"n":' + v + b"}"},
        "payload",
        {str(2**64).encode(), str(2**63).encode(), str(-(2**63) - 1).encode(), b"1e308", b"-1e308", b"1.5"}
        | {b"1e-400", b"-0"},
    ),
}
# runAt: times PostgreSQL or Python cannot hold, and times outside the range a job may run at.
BAD_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00.0000004Z",
    "0001-01-01T01:00:00+01:00",
    "0001-01-01T00:00:00+00:00:01",
    "1900-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.9999999Z",
    "9999-12-31T23:59:59.999999-00:01",
    "9999-01-01T00:00:00Z",
    "infinity",
    "-infinity",
    "+infinity",
    "10000-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2024-01-01T00:00:00",
    "2016-12-31T23:59:60Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T24:00:01Z",
    "2024-01-01T00:00:00+24:00",
    "now",
    "epoch",
    "2024-01-01T00:00:00\x00Z",
]
GOOD_TIMES = [
    "1970-01-01T00:00:00Z",
    "2024-01-01T00:00:00.123456789012Z",
    "2030-01-01T00:00:00+23:59",
    "8999-12-31T23:59:59-14:00",
]
BAD_EPOCHS = [b"-1", b"-62135596800", b"253402300799", b"253402300800", b"1e20", b"1e400", b"-1e400"]


def body_field_cases() -> Iterator[Case]:
    def post(label: str, fields: dict[str, bytes], **kw: Any) -> Case:
        return Case(f"POST /api/jobs {label}", "POST", "/api/jobs", job_body(fields), **kw)

    for slot, (place, field, in_payload) in STRING_SLOTS.items():
        for label, token, what in HOSTILE_STRINGS:
            if what == "not-json":
                yield post(f"{slot}: {label}", place(token), field=field, or_bad_json=True, statuses=(400,))
            elif what in ("big", "empty") and in_payload:
                yield post(f"{slot}: {label}", place(token), refuse=False)
            else:
                yield post(f"{slot}: {label}", place(token), field=field)
        if slot != "payload key":
            for token in WRONG_TYPES:
                # null leaves an optional field out; a number is a runAt in epoch seconds
                takes = (token == b"null" and slot in ("uniqueKey", "runAt")) or (token == b"12" and slot == "runAt")
                yield post(f"{slot} = {token.decode()}", place(token), field=field, refuse=not (in_payload or takes))
    for token in (b"null", b"[]", b'"x"', b"12", b"true", b"[{}]"):
        yield post(f"payload = {token.decode()}", {"payload": token}, field="payload")
    for slot, (place, field, fits) in NUMBER_SLOTS.items():
        for token in NUMBERS:
            yield post(f"{slot} = {token[:24].decode()}", place(token), field=field, refuse=token not in fits)
        for token in NOT_NUMBERS:
            yield post(f"{slot} = {token.decode()}", place(token), field=field, or_bad_json=True, statuses=(400,))
    for t in BAD_TIMES:
        yield post(f"runAt {t!r}", {"runAt": json_string(t)}, field="runAt")
    for token in BAD_EPOCHS:
        yield post(f"runAt = {token.decode()} (epoch seconds)", {"runAt": token}, field="runAt")
    for t in GOOD_TIMES:
        yield post(f"runAt {t!r} (in range)", {"runAt": json_string(t)}, refuse=False)
    yield post("runAt = 0 (epoch seconds, in range)", {"runAt": b"0"}, refuse=False)
    # duplicate keys: whichever wins, it is a channel of the caller's
    yield post("channelId twice, bob's then alice's", {"channelId": b'"b1","channelId":"a1"'}, refuse=False)


async def test_every_body_field_of_an_enqueue_refuses_hostile_values_and_names_it(runner: Runner) -> None:
    cases = list(body_field_cases())
    assert len(cases) > 200
    await runner.run(cases)
    await runner.check()


# --- whole bodies and deep nesting ----------------------------------------------------------------


def nested(depth: int, kind: str) -> bytes:
    return b"[" * depth + b"]" * depth if kind == "arrays" else b'{"a":' * depth + b"1" + b"}" * depth


def whole_body_cases() -> Iterator[Case]:
    def post(label: str, body: bytes, **kw: Any) -> Case:
        kw.setdefault("statuses", (400,))
        return Case(f"POST /api/jobs {label}", "POST", "/api/jobs", body, **kw)

    not_json = {
        "a lone 0xff byte": b"\xff",
        "0xff 0xfe 0xfd": b"\xff\xfe\xfd",
        "a truncated UTF-8 sequence": b"\xc3",
        "UTF-16 with a BOM": '{"type":"echo","channelId":"a1"}'.encode("utf-16"),
        "UTF-8 bytes of a surrogate between fields": b'{"type":"echo",\xed\xa0\x80"channelId":"a1"}',
        "a NUL byte": b"\x00",
        "a raw NUL byte inside the object": b'{"type":"echo"\x00,"channelId":"a1"}',
        "Latin-1 text": '{"type":"écho","channelId":"a1"}'.encode("latin-1"),
        "truncated": b'{"type":"echo","channelId":"a1"',
        "NaN": b"NaN",
    }
    for label, body in not_json.items():
        yield post(f"body: {label}", body, kind="bad-json")
    # a value msgspec converts with a plain ValueError, then bytes no decoder reads further on
    past_9999 = b'{"type":"echo","channelId":"a1","runAt":253402300800,"payload":'
    for label, rest in {
        "truncated": b"",
        "invalid UTF-8": b'{"x":"\xff"}}',
        "nested": nested(100_000, "arrays"),
    }.items():
        yield post(f"runAt past 9999 in epoch seconds, then {label}", past_9999 + rest, field="runAt", or_bad_json=True)
    yield post("runAt past 9999 in epoch seconds, then a number out of range", past_9999 + b'{"n":1e400}}')
    for label, body in {
        "empty": b"",
        "null": b"null",
        "an array": b"[]",
        "1e400": b"1e400",
        "a string": b'"x"',
    }.items():
        yield post(f"body: {label}", body)
    for depth in (1000, 10_000, 100_000):
        for kind in ("arrays", "objects"):
            yield post(f"top-level {kind} nested {depth} deep", nested(depth, kind))  # no object, or field `a`
            yield post(
                f"payload value of {kind} nested {depth} deep",
                job_body({"payload": b'{"x":' + nested(depth, kind) + b"}"}),
            )
        yield post(f"payload itself nested {depth} deep", job_body({"payload": nested(depth, "objects")}))
    # Depths a decoder takes, near where it stops: stored, they must read back (a payload
    # that decodes at the door and breaks a later read or encode is the worst case).
    for depth in (100, 500, 900, 950, 975, 985, 990, 993, 995, 997, 999):
        yield post(
            f"payload nested {depth} deep",
            job_body({"payload": b'{"x":' + nested(depth, "arrays") + b"}"}),
            statuses=None,
            refuse=False,
        )


async def test_bodies_that_are_no_json_or_nest_too_deep_are_400_and_write_nothing(runner: Runner) -> None:
    await runner.run(whole_body_cases())
    await runner.check()


# --- query parameters and list cursors ---------------------------------------------------------------

# (label, percent-encoded value, whether it must be refused naming the parameter)
QUERY_VALUES = [
    ("NUL", "%00", True),
    ("NUL inside", "a%00b", True),
    ("NUL after text", "a1%00", True),
    ("invalid UTF-8 %FF", "%FF", False),
    ("UTF-8-encoded surrogate", "%ED%A0%80", False),
    ("overlong UTF-8", "%C0%AF", False),
    ("60 kB value", "q" * 60_000, True),
    ("1 MB value", "q" * MB, True),  # past uvicorn's 64 KiB URL limit: its parser answers
    ("201 characters", "c" * 201, False),
    ("empty", "", False),
]


def cursor_values() -> Iterator[tuple[str, str, bool]]:
    """(label, cursor, must be refused): crafted base64url("<created_at>|<uuid>") cursors."""
    jid = str(uuid.uuid4())
    for t in BAD_TIMES:
        # datetime.fromisoformat reads a NUL inside the time as a separator: a harmless time
        yield f"cursor time {t!r}", b64url(f"{t}|{jid}".encode()), "\x00" not in t
    for t in ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00.123456789012+00:00", "2024-W01-1T00:00:00+00:00"):
        yield f"cursor time {t!r} (in range)", b64url(f"{t}|{jid}".encode()), False
    for label, raw in [
        ("invalid UTF-8 inside", b"\xff\xfe|x"),
        ("NUL in the uuid", f"2024-01-01T00:00:00+00:00|{jid[:-1]}\x00".encode()),
        ("not a uuid", b"2024-01-01T00:00:00+00:00|nope"),
        ("no separator", b"2024-01-01T00:00:00+00:00"),
        ("empty time", f"|{jid}".encode()),
        ("only a separator", b"|"),
    ]:
        yield f"cursor {label}", b64url(raw), True
    for label, text in [("not base64", "***"), ("standard base64", "%2B%2F%2B%2F"), ("201 characters", "A" * 201)]:
        yield f"cursor {label}", text, True


def query_cases(job_id: str) -> Iterator[Case]:
    routes = [
        ("GET", "/api/jobs", "channelId", "text"),
        ("GET", "/api/jobs", "type", "text"),
        ("GET", "/api/jobs", "state", "strict"),
        ("GET", "/api/jobs", "cursor", "strict"),
        ("GET", "/api/jobs", "limit", "strict"),
        ("GET", "/api/jobs/recent", "channelId", "text"),
        ("GET", "/api/events", "channelId", "text"),
        ("GET", f"/api/jobs/{job_id}/artifact", "name", "text"),
    ]
    for who in ("alice", "admin"):
        for method, path, param, rule in routes:
            if path.endswith("/artifact") and who == "admin":
                continue
            for label, value, bad in QUERY_VALUES:
                must = rule == "strict" or bad
                yield Case(
                    f"{who} {method} {path}?{param}= {label}",
                    method,
                    f"{path}?{param}={value}",
                    who=who,
                    field=param if must else None,
                    refuse=must and not (param == "limit" and value == ""),
                    parser_may_refuse=len(value) > 65_536,
                )
            yield Case(
                f"{who} {method} {path}?{param} given twice",
                method,
                f"{path}?{param}=a1&{param}=%00",
                who=who,
                refuse=False,
            )
        for label, cursor, bad in cursor_values():
            yield Case(
                f"{who} GET /api/jobs {label}",
                "GET",
                f"/api/jobs?cursor={cursor}",
                who=who,
                field="cursor" if bad else None,
                kind="bad-cursor" if bad and len(cursor) <= 200 else None,
                refuse=bad,
            )
        # NUL channel ids in a path and in a stream, for tenants and (no channel scope) the admin
        for channel in ("%00", "a%00b", "a1%00"):
            yield Case(f"{who} clear channel {channel}", "POST", f"/api/channels/{channel}/clear", who=who)
            for last in (None, b"0:1:1::"):
                yield Case(
                    f"{who} GET /api/events?channelId={channel} Last-Event-ID {last!r}",
                    "GET",
                    f"/api/events?channelId={channel}",
                    who=who,
                    headers=() if last is None else ((b"Last-Event-ID", last),),
                    field="channelId",
                )
        yield Case(f"{who} clear a 60 kB channel id", "POST", f"/api/channels/{'c' * 60_000}/clear", who=who)
        yield Case(
            f"{who} clear a 1 MB channel id",
            "POST",
            f"/api/channels/{'c' * MB}/clear",
            who=who,
            parser_may_refuse=True,
        )


async def test_query_parameters_cursors_and_channel_paths_refuse_nul_and_bad_times(runner: Runner, api: Api) -> None:
    async with api.client("alice") as c:
        job = (await c.post("/api/jobs", json={"type": "echo", "channelId": "a1"})).json()["job"]
    await runner.run(query_cases(job["id"]))
    await runner.check()


# --- headers ----------------------------------------------------------------------------------------


def header_cases(job_id: str) -> Iterator[Case]:
    body = job_body({})
    for label, value, outcome in [
        ("NUL inside", b"k\x00k", "refuse"),
        ("a lone NUL", b"\x00", "refuse"),
        ("0xff 0xfe (obs-text)", b"\xff\xfe", "either"),
        ("UTF-8 bytes of a surrogate", b"\xed\xa0\x80", "either"),
        ("a literal %00", b"%00", "either"),
        ("201 characters", b"i" * 201, "refuse"),
        ("100 kB", b"i" * 100_000, "refuse"),
        ("1 MB", b"i" * MB, "refuse"),
        ("empty", b"", "either"),
    ]:
        yield Case(
            f"POST /api/jobs Idempotency-Key {label}",
            "POST",
            "/api/jobs",
            body,
            headers=((b"Idempotency-Key", value),),
            field="Idempotency-Key",
            refuse=outcome == "refuse",
            parser_may_refuse=b"\x00" in value,
        )
    many_xip = b"1:1:2000:" + b",".join(b"%d" % i for i in range(2, 1003)) + b":"
    for path in ("/api/events?channelId=a1", f"/api/jobs/{job_id}/events", "/api/events"):
        for label, value, outcome in [
            ("NUL at the end", b"1:1:2::\x00", "refuse"),
            ("a lone NUL", b"\x00", "refuse"),
            ("NUL inside", b"1:1\x00:2::", "refuse"),
            ("0xff 0xfe", b"\xff\xfe", "refuse"),
            ("UTF-8 bytes of a surrogate", b"\xed\xa0\x80", "refuse"),
            ("a word", b"abc", "refuse"),
            ("Arabic-Indic digits", "\u0661:\u0661:\u0662::".encode(), "refuse"),
            ("last id 2**63", b"9223372036854775808:1:2::", "refuse"),
            ("xmin > xmax", b"1:5:3::", "refuse"),
            ("1001 running transactions", many_xip, "refuse"),
            ("40,001 characters", b"1" * 40_001, "refuse"),
            ("a valid start", b"0:1:1::", "either"),
        ]:
            yield Case(
                f"GET {path} Last-Event-ID {label}",
                "GET",
                path,
                headers=((b"Last-Event-ID", value),),
                field="Last-Event-ID",
                refuse=outcome == "refuse",
                parser_may_refuse=b"\x00" in value,
            )
    for label, value in [
        ("NUL in the token", b"Bearer pgcue_\x00abc"),
        ("0xff bytes", b"Bearer \xff\xfe"),
        ("UTF-8 bytes", "Bearer été".encode()),
        ("100 kB token", b"Bearer " + b"k" * 100_000),
    ]:
        yield Case(
            f"GET /api/jobs Authorization {label}",
            "GET",
            "/api/jobs",
            who=None,
            headers=((b"Authorization", value),),
            statuses=(400, 401, 431),
            parser_may_refuse=b"\x00" in value,
        )


async def test_hostile_idempotency_keys_last_event_ids_and_tokens(runner: Runner, api: Api) -> None:
    async with api.client("alice") as c:
        job = (await c.post("/api/jobs", json={"type": "echo", "channelId": "a1"})).json()["job"]
    await runner.run(header_cases(job["id"]))
    await runner.check()


# --- job ids ------------------------------------------------------------------------------------------

JOB_ROUTES = [
    ("GET", "/api/jobs/{}", None),
    ("DELETE", "/api/jobs/{}", None),
    ("POST", "/api/jobs/{}/cancel", None),
    ("POST", "/api/jobs/{}/retry", None),
    ("GET", "/api/jobs/{}/artifact", None),
    ("GET", "/api/jobs/{}/stages", None),
    ("POST", "/api/jobs/{}/resume", b'{"decision":"approve"}'),
    ("GET", "/api/jobs/{}/events", None),
]
BAD_IDS = [
    "not-a-uuid",
    "%00",
    "a%00b",
    "1",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-000000000000%00",
    "..%2F..%2Fetc%2Fpasswd",
    "a%2Fb",
    "a" * 5000,
    "%FF",
    "%ED%A0%80",
    "%20",
    "recent",
]


def job_id_cases() -> Iterator[Case]:
    for method, template, body in JOB_ROUTES:
        for bad in BAD_IDS:
            if bad == "recent" and (method, template) == ("GET", "/api/jobs/{}"):
                continue  # that is the route GET /api/jobs/recent
            yield Case(
                f"{method} {template} with id {bad[:40]!r}",
                method,
                template.format(bad),
                body,
                statuses=(404,),
                kind="not-found",
                detail="is not a job id",
            )
        # well-formed ids of no job of the caller's, in every spelling uuid.UUID takes
        for good in (str(uuid.uuid4()), uuid.uuid4().hex, "urn:uuid:" + str(uuid.uuid4()), f"{{{uuid.uuid4()}}}"):
            yield Case(
                f"{method} {template} with unknown id {good[:12]}…",
                method,
                template.format(good),
                body,
                statuses=(404,),
                detail="not found",
            )


async def test_malformed_job_ids_are_404_not_a_job_id_on_every_job_route(runner: Runner) -> None:
    await runner.run(job_id_cases())
    await runner.check()


# --- resume bodies ------------------------------------------------------------------------------------


def resume_cases(job_id: str) -> Iterator[Case]:
    path = f"/api/jobs/{job_id}/resume"

    def resume(label: str, body: bytes, **kw: Any) -> Case:
        return Case(f"resume {label}", "POST", path, body, **kw)

    for decision in (b'"reject"', b'"approve"'):
        d = decision.decode()
        for label, token, what in HOSTILE_STRINGS:
            body = b'{"decision":' + decision + b',"feedback":' + token + b"}"
            if what == "not-json":
                yield resume(f"{d} feedback {label}", body, field="feedback", or_bad_json=True, statuses=(400,))
            elif what == "empty" and d == '"approve"':
                yield resume(f"{d} feedback {label}", body, statuses=(409,))  # fine feedback; no run waits
            else:
                yield resume(f"{d} feedback {label}", body, field="feedback")
        for token in WRONG_TYPES:
            if token != b"null":
                yield resume(
                    f"{d} feedback = {token.decode()}",
                    b'{"decision":' + decision + b',"feedback":' + token + b"}",
                    field="feedback",
                )
        yield resume(
            f"{d} feedback 4001 characters",
            b'{"decision":' + decision + b',"feedback":"' + b"f" * 4001 + b'"}',
            field="feedback",
        )
    for label, token, what in HOSTILE_STRINGS:
        body = b'{"decision":' + token + b"}"
        if what == "not-json":
            yield resume(f"decision {label}", body, field="decision", or_bad_json=True, statuses=(400,))
        else:
            yield resume(f"decision {label}", body, field="decision")
    for token in WRONG_TYPES:
        yield resume(f"decision = {token.decode()}", b'{"decision":' + token + b"}", field="decision")
    yield resume("unknown field", b'{"decision":"approve","by":"bob"}', kind="unknown-field")
    yield resume("body 0xff", b"\xff", kind="bad-json", statuses=(400,))
    yield resume("body nested 10000 deep", nested(10_000, "arrays"), statuses=(400,))
    yield resume("body of objects nested 10000 deep", nested(10_000, "objects"), statuses=(400,))
    yield resume(
        "feedback nested 10000 deep",
        b'{"decision":"reject","feedback":' + nested(10_000, "arrays") + b"}",
        statuses=(400,),
    )
    yield resume("a run that waits for no approval", b'{"decision":"approve"}', statuses=(409,))


async def test_resume_refuses_nul_and_invalid_utf8_feedback_and_writes_nothing(runner: Runner, api: Api) -> None:
    async with api.client("alice") as c:
        job = (await c.post("/api/jobs", json={"type": "echo", "channelId": "a1"})).json()["job"]
    await runner.run(resume_cases(job["id"]))
    await runner.check()


# --- one tenant's bad request in a batch with another tenant's good ones ----------------------------


async def test_a_bad_run_at_sent_with_other_tenants_enqueues_fails_only_itself(api: Api, pool: asyncpg.Pool) -> None:
    """Concurrent enqueues share one statement (pgcue.core.batching): a value PostgreSQL
    cannot take fails its own request (a 4xx), never the others in its batch."""
    bad = {"type": "echo", "channelId": "a1", "runAt": "0001-01-01T00:00:00+14:00"}
    good = {"type": "echo", "channelId": "b1", "payload": {"n": 1}}
    async with api.client("alice") as alice, api.client("bob") as bob:
        sends = [alice.post("/api/jobs", json=bad) for _ in range(20)] + [
            bob.post("/api/jobs", json={**good, "payload": {"n": i}}) for i in range(40)
        ]
        order = [sends[i] for i in sorted(range(60), key=lambda i: (i * 7) % 60)]  # interleaved
        async with asyncio.timeout(30):
            answers = await asyncio.gather(*order)
    bobs = [r for r in answers if r.request.headers["authorization"].endswith(api.keys["bob"])]
    alices = [r for r in answers if r not in bobs]
    assert [r.status_code for r in bobs] == [201] * 40, [r.text[:200] for r in bobs if r.status_code != 201]
    assert {r.status_code for r in alices} == {422}, {r.text[:200] for r in alices}
    assert all(r.json()["field"] == "runAt" and r.headers["content-type"] == PROBLEM for r in alices)
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE channel_id = 'a1'") == 0
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE channel_id = 'b1'") == 40


# --- payload schemas ------------------------------------------------------------------------------------


def _wrong_value(prop: dict[str, Any]) -> Any:
    """A JSON value the property's schema refuses, by its declared type."""
    declared = prop["type"]
    kinds = {declared} if isinstance(declared, str) else set(declared)
    return 12345 if kinds & {"string", "object"} else {"not": "this"}


async def test_payload_schema_errors_are_422_naming_the_path(api: Api, pool: asyncpg.Pool) -> None:
    """Every registered type's schema, generated: a missing required property is 422 naming
    payload.<it>; a value of the wrong type is 422 naming its path; so is one inside an
    array of objects (render's scenes[0].duration); an unknown type is 422 naming `type`."""
    rows = await pool.fetch("SELECT name, plan, payload_schema FROM pgcue.job_types WHERE payload_schema IS NOT NULL")
    assert {"tts", "render"} <= {r["name"] for r in rows}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("tts", {}, "payload.text"),
        ("tts", {"text": 12}, "payload.text"),
        ("render", {"scenes": [{"color": "#1d3557", "duration": "long"}]}, "payload.scenes[0].duration"),
        ("render", {"scenes": [{"color": "#1d3557", "duration": 1}, {"duration": [1]}]}, "payload.scenes[1].duration"),
        ("render", {"scenes": "all of them"}, "payload.scenes"),
    ]
    for row in rows:
        schema = row["payload_schema"]
        if isinstance(schema, str):
            schema = json.loads(schema)
        defs = schema.get("$defs", {})
        if "$ref" in schema:
            schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
        base = valid_payload(row["name"])
        for prop in schema.get("required", []):
            cases.append((row["name"], {k: v for k, v in base.items() if k != prop}, f"payload.{prop}"))
        for prop, spec in schema.get("properties", {}).items():
            if "type" in spec:
                cases.append((row["name"], {**base, prop: _wrong_value(spec)}, f"payload.{prop}"))
    assert len(cases) > 20
    plans = {r["name"]: r["plan"] for r in rows}
    before = await pool.fetchval("SELECT count(*) FROM pgcue.jobs")
    failures = []
    async with api.client("alice") as free, api.client("carol") as paid:
        for job_type, payload, field in cases:
            c, channel = (paid, "c1") if plans[job_type] == "paid" else (free, "a1")
            r = await c.post("/api/jobs", json={"type": job_type, "channelId": channel, "payload": payload})
            doc = r.json()
            if r.status_code != 422 or r.headers["content-type"] != PROBLEM or doc.get("field") != field:
                failures.append(f"{job_type} {payload}: {r.status_code} field {doc.get('field')!r}, want {field!r}")
            elif field not in doc["detail"]:
                failures.append(f"{job_type} {payload}: detail {doc['detail']!r} does not name {field}")
        for job_type in ("no-such-type", "TTS", "tts ", "e" * 63):
            r = await free.post("/api/jobs", json={"type": job_type, "channelId": "a1"})
            if r.status_code != 422 or r.json().get("field") != "type" or "unknown job type" not in r.json()["detail"]:
                failures.append(f"type {job_type!r}: {r.status_code} {r.text[:200]}")
        # and the valid payloads pass, so the refusals above are about the fields alone
        for job_type in plans:
            c, channel = (paid, "c1") if plans[job_type] == "paid" else (free, "a1")
            r = await c.post(
                "/api/jobs", json={"type": job_type, "channelId": channel, "payload": valid_payload(job_type)}
            )
            if r.status_code != 201:
                failures.append(f"{job_type} with a valid payload: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs") == before + len(plans)
