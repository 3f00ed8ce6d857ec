"""What enqueue refuses before it writes, without a database: every field's rules, the
run_at range, JSON PostgreSQL cannot store, and payloads against a type's schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from pgcue.core.errors import InvalidJob
from pgcue.core.models import NewJob
from pgcue.core.queue.enqueue import check_run_at, clean_text, enqueue_args, json_text
from pgcue.core.queue.types import payload_errors
from pgcue.workers.types.render import RenderPayload
from pgcue.workers.types.tts import TtsPayload


def job(**kw: Any) -> NewJob:
    kw.setdefault("type", "echo")
    kw.setdefault("channel_id", "c")
    return NewJob(**kw)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"priority": 1001}, "priority", "out of range"),
        ({"priority": -1001}, "priority", "out of range"),
        ({"channel_id": ""}, "channelId", "1 to 200"),
        ({"channel_id": "x" * 201}, "channelId", "1 to 200"),
        ({"type": "t" * 64}, "type", "1 to 63"),
        ({"max_attempts": 0}, "maxAttempts", "out of range"),
        ({"max_attempts": 101}, "maxAttempts", "out of range"),
        ({"unique_key": ""}, "uniqueKey", "1 to 200"),
        ({"idempotency_key": "k" * 201}, "Idempotency-Key", "1 to 200"),
        ({"channel_id": "a\x00b"}, "channelId", "NUL"),
        ({"type": "ech\x00o"}, "type", "NUL"),
        ({"unique_key": "k\ud800"}, "uniqueKey", "invalid Unicode"),
        ({"payload": {"a": "\x00"}}, "payload", "NUL"),
        ({"payload": {"a\x00": 1}}, "payload", "NUL"),
        ({"payload": {"n": object()}}, "payload", "not JSON-serialisable"),
        ({"run_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))}, "runAt", "out of range"),
        ({"run_at": datetime(1969, 12, 31, tzinfo=UTC)}, "runAt", "between 1970"),
        ({"run_at": datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))}, "runAt", "out of range"),
        ({"run_at": datetime(2030, 1, 1)}, "runAt", "time zone"),
    ],
)
def test_a_field_that_breaks_a_rule_is_refused_naming_it(fields: dict[str, Any], field: str, says: str) -> None:
    jobs = [job(), job(**fields), job()]  # the bad one among good ones
    with pytest.raises(InvalidJob, match=says) as refused:
        enqueue_args(jobs)
    assert refused.value.field == field


def test_good_jobs_give_their_columns() -> None:
    when = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    ids, args = enqueue_args([job(payload={"x": 1}, run_at=when, priority=5), job()])
    assert len(set(ids)) == 2 and all(i.version == 7 for i in ids)
    assert args[5] == ['{"x":1}', "{}"]
    assert args[6][0] == when.astimezone(UTC) and args[6][1] is None


def test_run_at_is_checked_and_made_utc() -> None:
    assert check_run_at(None) is None
    assert check_run_at(datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=-5)))) == datetime(
        2030, 1, 1, 5, tzinfo=UTC
    )


def test_json_text_and_clean_text() -> None:
    assert json_text({"a": [1, "b"]}, "result") == '{"a":[1,"b"]}'
    with pytest.raises(InvalidJob, match="NUL"):
        json_text({"a": "\x00"}, "result")
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        json_text({"a": object()}, "result")
    assert clean_text("a\x00b\ud800c") == "ab?c"
    assert len(clean_text("x" * 5000)) == 4000 and clean_text("x" * 5000).endswith("…")


def _validator(kind: type) -> Any:
    return jsonschema_rs.validator_for(msgspec.json.schema(kind))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "payload.text"),
        ({"text": 5}, "payload.text"),
        ({"text": "hi", "speed": 9}, "payload.speed"),
        ({"text": "hi", "format": "ogg"}, "payload.format"),
        ({"text": "hi", "voice": "not a voice!"}, "payload.voice"),
    ],
)
def test_a_payload_its_type_refuses_names_the_field(payload: dict[str, Any], field: str) -> None:
    errors = payload_errors(_validator(TtsPayload), payload)
    assert errors and errors[0][0] == field, errors


def test_nested_payload_fields_are_named_by_their_path() -> None:
    errors = payload_errors(_validator(RenderPayload), {"scenes": [{"duration": 2}, {"duration": "long"}]})
    assert errors[0][0] == "payload.scenes[1].duration", errors
    assert payload_errors(_validator(RenderPayload), {"scenes": [{"color": "#000000"}]}) == []
