"""The Jobs panel's pieces that need no database: what a row's chip says for each state (and
what other products call it), the previews by artifact type, the one line of history an
event makes, durations, the CSRF token, the session cookie parser, the shared snapshot's
stale-while-revalidate, and feedback times in the API's one format."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pgcue.api.auth import cookie_value, csrf_token, is_panel_page, is_public
from pgcue.api.panel.render import artifact_kind, chip_of, duration, environment, event_line, job_view, stage_chip
from pgcue.api.panel.snapshot import SharedCache
from pgcue.core.models import Job, JobEvent, StageRow
from pgcue.core.states import JobState


def job(**changes: Any) -> Job:
    now = datetime.now(UTC)
    base: dict[str, Any] = dict(
        id=uuid.uuid4(),
        type="tts",
        channel_id="a1",
        owner_id="alice",
        state=JobState.QUEUED,
        priority=0,
        payload={},
        run_at=now,
        attempts=0,
        max_attempts=3,
        cancel_requested=False,
        result=None,
        result_path=None,
        error_message=None,
        errors=[],
        progress=0,
        progress_message=None,
        stage=None,
        locked_by=None,
        lease_expires_at=None,
        idempotency_key=None,
        unique_key=None,
        created_at=now,
        started_at=None,
        completed_at=None,
        updated_at=now,
    )
    base.update(changes)
    return Job(**base)


def test_a_chip_names_the_state_and_what_other_products_call_it() -> None:
    assert chip_of(job()).label == "queued" and "submitted" in chip_of(job()).title
    done = job(state=JobState.COMPLETED)
    assert chip_of(done).label == "completed" and "succeeded" in chip_of(done).title
    assert chip_of(job(state=JobState.FAILED)).css == "failed"
    assert chip_of(job(waiting_for="approval")).label == "waiting for approval"  # not just "queued"
    assert chip_of(job(waiting_for="children")).label == "waiting for its stage"
    running = job(state=JobState.RUNNING, cancel_requested=True, started_at=datetime.now(UTC), attempts=1)
    assert chip_of(running).label == "cancelling…"
    assert stage_chip("awaiting_approval").css == "waiting" and stage_chip("done").css == "completed"


def test_a_row_says_attempts_of_max_and_offers_what_its_state_allows() -> None:
    v = job_view(job(state=JobState.FAILED, attempts=2, completed_at=datetime.now(UTC)))
    assert v.attempts == "2 of 3" and v.can_retry and v.can_delete and not v.can_cancel
    r = job_view(job(state=JobState.RUNNING, attempts=1, started_at=datetime.now(UTC)))
    assert r.can_cancel and not r.can_retry and r.running_since
    assert len(r.short) == 8 and r.id.endswith(r.short)  # the id's random end, not its time-ordered start


@pytest.mark.parametrize(
    ("name", "result", "kind"),
    [
        ("x/speech.wav", None, "audio"),
        ("x/speech.mp3", None, "audio"),
        ("x/episode.mp4", None, "video"),
        ("x/still.png", None, "image"),
        ("x/drawing.svg", None, "file"),  # an image a browser would run: a download, never inline
        ("x/notes.txt", None, "file"),
        ("x/blob", {"contentType": "audio/wav"}, "audio"),
        (None, None, None),
    ],
)
def test_an_artifact_is_previewed_by_its_type(name: str | None, result: Any, kind: str | None) -> None:
    assert artifact_kind(name, result) == kind


def test_an_event_is_one_line_of_history() -> None:
    at = datetime.now(UTC)
    assert event_line(JobEvent(1, "job:status", {"state": "running", "attempt": 2, "maxAttempts": 3}, at)) == (
        "running (attempt 2 of 3)"
    )
    assert event_line(JobEvent(2, "job:status", {"state": "failed", "errorMessage": "boom"}, at)) == "failed: boom"
    assert event_line(JobEvent(3, "job:progress", {"progress": 40, "message": "segment 2"}, at)) == "40% segment 2"
    stage = {"stage": "draft", "state": "pending", "iteration": 1, "decision": "reject", "feedback": "shorter"}
    assert event_line(JobEvent(4, "stage:updated", stage, at)) == "stage draft pending (iteration 1): reject — shorter"
    assert event_line(JobEvent(5, "proposals:updated", {"type": "proposals"}, at)) == "new proposals"


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration(ms) for ms in (None, 1234, 42_000, 184_000, 7_500_000, 200 * 3_600_000)] == [
        "—",
        "1.2 s",
        "42 s",
        "3 min 4 s",
        "2 h 5 min",
        "8 d 8 h",
    ]


def test_templates_escape_what_a_job_carries() -> None:
    env = environment()
    html = env.from_string("{{ x }}").render(x='<script>alert("x")</script>')
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_csrf_token_is_derived_from_the_session_and_cookies_parse_strictly() -> None:
    assert csrf_token("pgcue_s_a") == csrf_token("pgcue_s_a") != csrf_token("pgcue_s_b")
    assert "pgcue_s_a" not in csrf_token("pgcue_s_a")
    headers = [(b"cookie", b"other=1; pgcue_session=pgcue_s_tok; x=y"), (b"cookie", b"pgcue_session=second")]
    assert cookie_value(headers, "pgcue_session") == "pgcue_s_tok"
    assert cookie_value([(b"cookie", b"xpgcue_session=nope")], "pgcue_session") is None
    assert is_panel_page("/ui") and is_panel_page("/ui/jobs/x") and not is_panel_page("/ui/fragments/rows")
    assert is_public("/ui/login") and not is_public("/ui/logout")


def test_feedback_times_come_in_the_apis_one_format() -> None:
    row = StageRow(
        job_id=uuid.uuid4(),
        position=0,
        name="draft",
        spec={"type": "p-work"},
        state="done",
        iteration=1,
        feedback=[
            {"iteration": 1, "at": "2024-03-15T10:30:05.123456+00:00"},  # as 0005 wrote it
            {"iteration": 2, "at": "2024-03-15T10:31:00.000Z"},
        ],
        child_id=None,
        review_child_id=None,
        result=None,
        result_path=None,
        started_at=None,
        finished_at=None,
        updated_at=datetime.now(UTC),
    )
    assert [f["at"] for f in row.to_wire().feedback] == ["2024-03-15T10:30:05.123Z", "2024-03-15T10:31:00.000Z"]


async def test_a_shared_snapshot_is_read_once_per_ttl_and_served_stale_while_it_refreshes() -> None:
    cache: SharedCache[int] = SharedCache(ttl=0.2)
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            await gate.wait()
        return calls

    first = await asyncio.gather(*(cache.get("k", load) for _ in range(20)))
    assert first == [1] * 20 and calls == 1  # twenty sessions, one read
    await asyncio.sleep(0.25)
    assert await cache.get("k", load) == 1  # stale: answered at once ...
    await asyncio.sleep(0)
    assert calls == 2  # ... while one refresh runs behind it
    assert await cache.get("k", load) == 1 and calls == 2
    gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k", load) == 2
    cache.forget("k")
    gate.clear()
    gate.set()
    assert await cache.get("k", load) == 3  # after an action: the next read waits for fresh counts
