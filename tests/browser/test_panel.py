"""The Jobs panel in a real browser (Debian's chromium, driven by Playwright), against the
real API on loopback and real worker processes: what a person sees and does. Every test
fails if the page logged a console error or threw (tests/browser/conftest.py)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from playwright.async_api import expect

from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import Watcher
from tests.helpers.apiserver import Api

pytestmark = pytest.mark.timeout(120)

SPEECH = (
    "Welcome back to the studio. Today we render a long piece of speech. It comes in many short "
    "segments. Each one is spoken in turn. Then they are merged. The panel shows every step live."
)

# Records each job row's state as the page shows it, and how much output its open details
# held at that moment, so a test can tell what the person saw, in order.
WATCH = """() => {
  window.__seen = {};
  const note = (row) => {
    const id = row.dataset.jobId;
    if (!id || row.dataset.absent) return;
    const out = row.querySelector('pre.output');
    const list = window.__seen[id] = window.__seen[id] || [];
    const entry = {state: row.dataset.state, out: out ? out.textContent.length : 0,
                   chip: (row.querySelector('.c-state .chip') || {}).textContent || ''};
    const last = list[list.length - 1];
    if (!last || last.state !== entry.state || last.out !== entry.out || last.chip !== entry.chip) list.push(entry);
  };
  const scan = () => document.querySelectorAll('tbody.job').forEach(note);
  new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     characterData: true});
  scan();
}"""


async def enqueue(api: Api, who: str, **body: Any) -> dict[str, Any]:
    async with api.client(who) as c:
        r = await c.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


async def get_job(api: Api, who: str, job_id: str) -> dict[str, Any]:
    async with api.client(who) as c:
        r = await c.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


async def live(page: Any, path: str) -> None:
    await page.goto(path)
    await expect(page.locator("#stream-state")).to_have_text("live")


def in_order(seen: list[str], wanted: list[str]) -> bool:
    """`wanted` appears in `seen` in this order (other states may come between)."""
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


async def test_a_tts_job_goes_queued_running_completed_live_with_its_output_and_playable_audio(
    api: Api, tabs: Any, worker: Any
) -> None:
    tab = await tabs("alice")
    page = tab.page
    await live(page, "/ui?channelId=a1")
    await page.evaluate(WATCH)

    job = await enqueue(api, "alice", type="tts", channelId="a1", payload={"text": SPEECH, "segmentChars": 40})
    row = page.locator(f"#job-{job['id']}")
    await expect(row).to_have_attribute("data-state", "queued")  # appeared live: no reload
    await row.get_by_role("button", name=re.compile(r"^Details of tts")).click()
    await expect(row.locator("tr.detail")).to_be_visible()
    await expect(row.locator("ol.history")).to_contain_text("queued")

    await worker("tts")
    await expect(row).to_have_attribute("data-state", "completed", timeout=60_000)
    output = row.locator("pre.output")
    await expect(output).to_contain_text("segment 1 of")
    await expect(output).to_contain_text("merged")

    seen = await page.evaluate(f"window.__seen[{job['id']!r}]")
    states = [s["state"] for s in seen]
    assert in_order(states, ["queued", "running", "completed"]), seen
    assert any(s["state"] == "running" and s["out"] > 0 for s in seen), seen  # output streamed while it ran
    events = await page.evaluate("window.pgcuePanel.events")
    mine = [e for e in events if e["jobId"] == job["id"]]
    kinds = [e["kind"] for e in mine]
    assert "job:output" in kinds and "job:progress" in kinds
    assert kinds.index("job:output") < max(i for i, e in enumerate(mine) if e["state"] == "completed")

    audio = row.locator("tr.detail audio")
    await expect(audio).to_have_count(1)
    handle = await audio.element_handle()
    await page.wait_for_function("a => a.readyState >= 1 && a.duration > 0", arg=handle, timeout=15_000)
    facts = await audio.evaluate(
        """async a => { a.muted = true; await a.play(); const t = a.currentTime; a.pause();
                        return {duration: a.duration, readyState: a.readyState, error: a.error, t}; }"""
    )
    assert facts["error"] is None and facts["readyState"] >= 2, facts
    stored = await get_job(api, "alice", job["id"])
    assert abs(facts["duration"] - stored["result"]["duration"]) < 0.2, (facts, stored["result"])
    assert (await page.locator(f"#job-{job['id']}").count()) == 1


async def test_a_running_sleep_job_is_cancelled_from_its_row_and_shows_cancelling_until_it_ends(
    api: Api, tabs: Any, worker: Any, pool: asyncpg.Pool
) -> None:
    await worker("sleep")
    tab = await tabs("alice")
    page = tab.page
    await live(page, "/ui?channelId=a1")
    await page.evaluate(WATCH)
    # Two steps of 3 s: its next checkpoint is up to 3 s away, so the cancel waits for it.
    job = await enqueue(api, "alice", type="sleep", channelId="a1", payload={"seconds": 6, "steps": 2})
    row = page.locator(f"#job-{job['id']}")
    await expect(row).to_have_attribute("data-state", "running", timeout=20_000)
    await row.get_by_role("button", name="Cancel").click()
    await expect(row.locator(".c-state .chip")).to_have_text("cancelling…")
    await expect(row).to_have_attribute("data-state", "cancelled", timeout=15_000)
    await expect(row.locator(".c-state .chip")).to_have_text("cancelled")
    assert await pool.fetchval("SELECT state FROM pgcue.jobs WHERE id = $1", uuid.UUID(job["id"])) == "cancelled"
    chips = [s["chip"] for s in await page.evaluate(f"window.__seen[{job['id']!r}]")]
    assert in_order(chips, ["running", "cancelling…", "cancelled"]), chips
    await expect(row.get_by_role("button", name="Retry")).to_be_visible()  # what a cancelled job offers


async def test_a_pipeline_waiting_for_approval_is_sent_back_with_feedback_then_approved_from_the_panel(
    api: Api, tabs: Any, worker: Any
) -> None:
    await worker("orchestrate", "p-work")
    tab = await tabs("carol")
    page = tab.page
    await live(page, "/ui?channelId=c1")
    run = await enqueue(api, "carol", type="orchestrate", channelId="c1", payload={"pipeline": "t-approve"})
    row = page.locator(f"#job-{run['id']}")
    await expect(row.locator(".c-state .chip")).to_have_text("waiting for approval", timeout=30_000)
    stages = row.locator("li.stage")
    await expect(stages).to_have_count(2)
    await expect(stages.nth(0)).to_contain_text("awaiting approval")
    await expect(stages.nth(1)).to_contain_text("pending")

    await row.get_by_label("Feedback for draft").fill("make it shorter")
    await row.get_by_role("button", name="Reject with feedback").click()
    await expect(stages.nth(0)).to_contain_text("iteration 2", timeout=30_000)
    await expect(row.locator(".c-state .chip")).to_have_text("waiting for approval", timeout=30_000)
    await expect(stages.nth(0)).to_contain_text("make it shorter")  # the person's feedback, on the stage

    approved_at = time.time()
    await row.get_by_role("button", name="Approve draft").click()
    await expect(row).to_have_attribute("data-state", "completed", timeout=30_000)
    await expect(stages.nth(1)).to_contain_text("done")

    done = await get_job(api, "carol", run["id"])
    started = datetime.fromisoformat(done["startedAt"].replace("Z", "+00:00")).timestamp()
    finished = datetime.fromisoformat(done["completedAt"].replace("Z", "+00:00")).timestamp()
    assert started < approved_at < finished  # its duration covers the whole run, the wait included
    assert abs(done["durationMs"] - (finished - started) * 1000) < 2
    await row.get_by_role("button", name=re.compile("^Details of orchestrate")).click()
    history = row.locator("ol.stage-history")
    await expect(history).to_contain_text("sent back by person (carol)")
    await expect(history).to_contain_text("passed by person (carol)")
    await expect(row.locator("dl.facts")).to_contain_text("the whole run")


async def test_a_bulk_retry_retries_every_failed_job_the_filter_matches_beyond_the_page(
    api: Api, tabs: Any, spawn_worker: Any, queue: Queue, watcher: Watcher, pool: asyncpg.Pool
) -> None:
    proc = await spawn_worker("t-permanent", "t-flaky").started()
    jobs = [NewJob(type="t-permanent", channel_id="a1", owner_id="alice", payload={"n": i}) for i in range(57)]
    jobs += [NewJob(type="t-permanent", channel_id="a2", owner_id="alice") for _ in range(3)]  # another channel
    jobs += [
        NewJob(type="t-flaky", channel_id="a1", owner_id="alice", max_attempts=1) for _ in range(2)
    ]  # another type
    ids = await queue.enqueue_many(jobs)
    await watcher.states(ids, {"failed"}, timeout=60)
    proc.signal(15)
    await proc.wait_exit()  # retried jobs stay queued: what the test counts

    tab = await tabs("alice")
    page = tab.page
    await live(page, "/ui?channelId=a1&type=t-permanent&state=failed")
    await expect(page.locator("tbody.job")).to_have_count(50)  # one page of 50 ...
    await expect(page.get_by_role("link", name="Older →")).to_be_visible()  # ... of more
    await page.get_by_role("button", name="Retry all").click()
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Retry 57 failed t-permanent jobs in a1")
    await dialog.get_by_role("button", name="Retry 57").click()
    await expect(page.locator("#notice")).to_contain_text("Retried 57 jobs")
    await expect(page.locator("tbody.job")).to_have_count(0, timeout=15_000)  # none failed any more, live
    await expect(page.locator("#no-jobs")).to_be_visible()

    rows = await pool.fetch("SELECT channel_id, type, state, count(*) AS n FROM pgcue.jobs GROUP BY 1, 2, 3")
    got = {(r["channel_id"], r["type"], r["state"]): r["n"] for r in rows}
    assert got == {
        ("a1", "t-permanent", "queued"): 57,
        ("a2", "t-permanent", "failed"): 3,
        ("a1", "t-flaky", "failed"): 2,
    }


async def test_another_users_job_never_appears_and_its_page_is_the_page_of_a_missing_job(api: Api, tabs: Any) -> None:
    tab = await tabs("alice")
    page = tab.page
    await live(page, "/ui?channelId=a1")
    mine = await enqueue(api, "alice", type="t-count", channelId="a1")
    theirs = await enqueue(api, "bob", type="t-count", channelId="b1")
    await expect(page.locator(f"#job-{mine['id']}")).to_have_count(1)
    await page.wait_for_timeout(500)  # the stream had time to bring bob's job, if it ever would
    assert await page.locator(f"#job-{theirs['id']}").count() == 0
    assert theirs["id"] not in await page.content()
    assert all(e["jobId"] != theirs["id"] for e in await page.evaluate("window.pgcuePanel.events"))

    missing_id = uuid.uuid4()
    for path in (f"/ui/jobs/{theirs['id']}", f"/ui/jobs/{missing_id}", "/ui?channelId=b1"):
        tab.expect_refused(path)  # the browser logs a 404 page's status to the console
    other = await page.goto(f"/ui/jobs/{theirs['id']}")
    other_html = await page.content()
    missing = await page.goto(f"/ui/jobs/{missing_id}")
    missing_html = await page.content()
    assert other is not None and missing is not None
    assert other.status == missing.status == 404
    assert other_html == missing_html
    assert theirs["id"] not in other_html
    channel = await page.goto("/ui?channelId=b1")
    assert channel is not None and channel.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")


async def until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def close_streams(api: Api, how: str) -> int:
    """End every open stream from the server's side, as a restart (`shutdown`: its final
    frame carries the resume point) or a slow reader's cut-off (`cut`: no final frame) does."""
    subs = list(api.hub._subs)
    for sub in subs:
        if how == "shutdown":
            sub.closed = True
        else:
            sub.overflowed = True
            api.hub.unsubscribe(sub)
        sub.wake()
    return len(subs)


async def test_the_stream_resumes_after_the_server_closes_it_with_no_duplicate_and_no_gap(
    api: Api, tabs: Any, worker: Any, pool: asyncpg.Pool
) -> None:
    await worker("t-slow")
    before = await pool.fetchval("SELECT coalesce(max(id), 0) FROM pgcue.job_events")
    tab = await tabs("alice")
    page = tab.page
    await live(page, "/ui?channelId=a1")
    jobs = []
    for round_ in range(3):
        for _ in range(2):
            job = await enqueue(api, "alice", type="t-slow", channelId="a1", payload={"steps": 20, "step": 0.05})
            jobs.append(job["id"])
        await asyncio.sleep(0.4)  # events flow: output, progress, status
        if round_ < 2:
            await until(lambda: api.hub.subscribers > 0)  # back after the last cut
            assert close_streams(api, "shutdown" if round_ == 0 else "cut") >= 1
            await enqueue(api, "alice", type="t-count", channelId="a1")  # an event while it is away
    await expect(page.locator("#stream-state")).to_have_text("live")
    deadline = time.monotonic() + 30
    while await pool.fetchval(
        "SELECT count(*) FROM pgcue.jobs WHERE state IN ('queued', 'running') AND type = 't-slow'"
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)

    expected = [
        r["id"]
        for r in await pool.fetch(
            "SELECT id FROM pgcue.job_events WHERE channel_id = 'a1' AND id > $1 ORDER BY id", before
        )
    ]
    await page.wait_for_function(f"window.pgcuePanel.ids.size >= {len(expected)}", timeout=20_000)
    await page.wait_for_timeout(300)
    received = await page.evaluate("window.pgcuePanel.received")
    assert len(received) == len(set(received)), "the stream sent an event twice"
    assert sorted(received) == expected, "the page missed events or got others"
    assert await page.evaluate("window.pgcuePanel.opened") >= 3  # it was cut twice and came back
    for job_id in jobs:
        await expect(page.locator(f"#job-{job_id}")).to_have_count(1)
        await expect(page.locator(f"#job-{job_id}")).to_have_attribute("data-state", "completed")


async def test_the_panel_is_usable_with_the_keyboard_alone(api: Api, tabs: Any, pool: asyncpg.Pool) -> None:
    job = await enqueue(api, "alice", type="t-count", channelId="a1")
    tab = await tabs("alice")
    page = tab.page
    await live(page, "/ui?channelId=a1")

    async def tab_to(selector: str, limit: int = 80, key: str = "Tab") -> None:
        for _ in range(limit):
            await page.keyboard.press(key)
            if await page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to the content"
    await tab_to(f"#job-{job['id']} button.expand")
    await page.keyboard.press("Enter")
    row = page.locator(f"#job-{job['id']}")
    await expect(row.locator("button.expand")).to_have_attribute("aria-expanded", "true")
    await expect(row.locator("tr.detail")).to_be_visible()
    await expect(row.locator("ol.history")).to_contain_text("queued")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focused control shows it

    await tab_to(f"#job-{job['id']} [data-act='cancel']")
    await page.keyboard.press("Enter")
    await expect(row).to_have_attribute("data-state", "cancelled")
    assert await pool.fetchval("SELECT state FROM pgcue.jobs WHERE id = $1", uuid.UUID(job["id"])) == "cancelled"

    await tab_to('[data-bulk="delete"]', key="Shift+Tab")
    await page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Delete 1 finished job in a1")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs") == 1  # Escape deleted nothing

    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.name") == "q"
    await page.keyboard.type(job["id"])
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"q="))
    await expect(page.locator("tbody.job")).to_have_count(1)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "phone"])
async def test_the_jobs_page_reads_at_1280_px_and_on_a_phone(
    api: Api, tabs: Any, worker: Any, viewport: dict[str, int]
) -> None:
    await worker("t-permanent")
    failed = await enqueue(api, "alice", type="t-permanent", channelId="a1")
    await enqueue(api, "alice", type="t-count", channelId="a1", payload={"note": "a long " * 40})
    tab = await tabs("alice", viewport=viewport)
    page = tab.page
    await live(page, "/ui?channelId=a1")
    row = page.locator(f"#job-{failed['id']}")
    await expect(row).to_have_attribute("data-state", "failed", timeout=20_000)
    await row.locator("button.expand").click()
    await expect(row.locator("section.errors")).to_contain_text("the input can never work")
    sizes = await page.evaluate(
        """() => ({scroll: document.documentElement.scrollWidth, width: window.innerWidth,
                   font: parseFloat(getComputedStyle(document.querySelector('td.c-job')).fontSize)})"""
    )
    assert sizes["scroll"] <= sizes["width"], sizes  # nothing runs off the side
    assert sizes["font"] >= 13, sizes
    for locator in (row.locator(".c-state .chip"), row.get_by_role("button", name="Retry"), page.locator(".counts")):
        box = await locator.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (locator, box)
    if viewport is PHONE:
        assert await page.locator("table.jobs thead").is_hidden()  # a card per job, each cell labelled
        label = await row.locator("td.c-attempts").evaluate("td => getComputedStyle(td, '::before').content")
        assert "Attempts" in label


async def test_the_operator_view_shows_the_fleet_and_pauses_a_type_for_admins_only(
    api: Api, tabs: Any, worker: Any, pool: asyncpg.Pool
) -> None:
    await worker("t-count")
    await enqueue(api, "alice", type="t-count", channelId="a1")
    await enqueue(api, "alice", type="t-permanent", channelId="a1")  # stays queued: no worker for it
    tab = await tabs("admin")
    page = tab.page
    await page.goto("/ui/operator")
    queues = page.locator("section[aria-labelledby=queues-title] tbody tr")
    row = page.locator("tr[data-type='t-permanent']")
    await expect(row).to_contain_text("t-permanent")
    await expect(row.locator("td").nth(0)).to_have_text("1")  # one runnable
    await expect(page.locator("section[aria-labelledby=workers-title]")).to_contain_text("t-count")
    await expect(page.locator("svg.chart")).to_be_visible()
    assert await queues.count() >= 5
    await row.get_by_role("button", name="Pause").click()
    await expect(row.get_by_role("button", name="Resume")).to_be_visible()
    assert await pool.fetchval("SELECT paused FROM pgcue.job_types WHERE name = 't-permanent'") is True
    await row.get_by_role("button", name="Resume").click()
    await expect(row.get_by_role("button", name="Pause")).to_be_visible()
    assert await pool.fetchval("SELECT paused FROM pgcue.job_types WHERE name = 't-permanent'") is False

    await page.get_by_label("Pause a channel").fill("a1")
    await page.locator("section[aria-labelledby=channels-title]").get_by_role("button", name="Pause").click()
    await expect(page.locator("section[aria-labelledby=channels-title] li")).to_contain_text("a1")
    assert await pool.fetchval("SELECT count(*) FROM pgcue.paused_channels WHERE channel_id = 'a1'") == 1

    user = await tabs("alice")
    user.expect_refused("/ui/operator")
    answer = await user.page.goto("/ui/operator")
    assert answer is not None and answer.status == 404
    assert await user.page.get_by_role("link", name="Operator").count() == 0


async def test_the_latest_proposals_show_up_live_when_a_proposals_job_completes(
    api: Api, tabs: Any, worker: Any
) -> None:
    await worker("proposals")
    tab = await tabs("carol")
    page = tab.page
    await live(page, "/ui?channelId=c1")
    assert await page.locator("section.proposals").count() == 0
    job = await enqueue(api, "carol", type="proposals", channelId="c1", payload={"brief": "tides", "count": 3})
    proposals = page.locator("section.proposals")
    await expect(proposals).to_be_visible(timeout=30_000)
    await expect(proposals.locator("li")).to_have_count(3)
    kinds = [e["kind"] for e in await page.evaluate("window.pgcuePanel.events") if e["jobId"] == job["id"]]
    assert "proposals:updated" in kinds
    await expect(page.locator("section.recent .card")).to_have_count(1)
