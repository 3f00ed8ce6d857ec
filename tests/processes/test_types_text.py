"""The text types through a real worker process: against a local OpenAI-compatible server
(streamed chat completions over real HTTP on loopback), and with the offline backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgcue.core.models import NewJob
from tests.helpers.typeservers import chat_route, serve

TEXT_TYPES = ("idea", "proposals", "fact-check", "humanize", "discover")

ANSWERS = {
    "idea writer": "Here you go:\n1. Queues at the bakery: how bread rises overnight\n"
    "2. Night shift: who runs the servers\n",
    "score video proposals": "1. Small bets: why little jobs win (score: 6/10)\n"
    "2. The big render: a day on the farm (score: 9/10)\n",
    "fact-checker": "- Water boils at 100 C at sea level :: supported :: standard physics\n"
    "- The moon is cheese :: disputed :: it is rock\n",
    "person": "We'll keep it simple, and we're glad you're here.",
    "research assistant": "1. Postgres docs :: https://www.postgresql.org/docs/ :: primary source\n",
}


def answer(request: dict[str, Any]) -> str:
    system = request["messages"][0]["content"]
    return next(text for marker, text in ANSWERS.items() if marker in system)


PAYLOADS = {
    "idea": {"topic": "how job queues work", "count": 3},
    "proposals": {"brief": "a short series about video rendering farms", "count": 2},
    "fact-check": {"text": "Water boils at 100 C at sea level. The moon is cheese."},
    "humanize": {"text": "In order to commence, we utilize the queue. It is not difficult.", "tone": "warm"},
    "discover": {
        "query": "postgres job queue locking",
        "limit": 5,
        "candidates": [
            {"title": "SKIP LOCKED in Postgres", "url": "https://a.example/skip", "description": "job queue locking"},
            {"title": "SKIP LOCKED (mirror)", "url": "https://a.example/skip", "description": "postgres locking"},
            {"title": "Baking bread", "url": "https://b.example/bread", "description": "sourdough at home"},
            {"title": "Queue theory", "url": "https://c.example/q", "description": "queue maths for a job system"},
        ],
    },
}


async def output_of(watcher, job_id) -> str:
    return await watcher.conn.fetchval(
        "SELECT string_agg(data->>'text', '' ORDER BY id) FROM pgcue.job_events"
        " WHERE job_id = $1 AND kind = 'job:output'",
        job_id,
    )


async def test_text_types_stream_from_an_openai_compatible_server(queue, watcher, spawn_worker, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with serve({"/v1/chat/completions": chat_route(answer, pieces=6)}) as (base, server):
        env = {
            "PGCUE_ARTIFACTS_DIR": str(artifacts),
            "PGCUE_LLM_BASE_URL": f"{base}/v1",
            "PGCUE_LLM_MODEL": "fake-model",
            "PGCUE_LLM_API_KEY": "test-key",
        }
        worker = spawn_worker(*TEXT_TYPES, env=env)
        jobs = [NewJob(type=t, channel_id="c", payload=p) for t, p in PAYLOADS.items()]
        jobs.append(NewJob(type="humanize", channel_id="c", payload={"text": "REJECT this"}))
        ids = await queue.enqueue_many(jobs)
        await worker.started()
        await watcher.states(ids, timeout=30)
        got = {t: await queue.get(i) for t, i in zip(TEXT_TYPES, ids, strict=False)}
        rejected = await queue.get(ids[-1])
        requests = [r for r in server.requests if r[0] == "POST"]

    for name, job in got.items():
        assert job.state == "completed", (name, job.error_message)
        assert job.result["provider"] == "chat-completions" and job.result["model"] == "fake-model"
        # The tokens were streamed into job:output as they came; together they are the answer.
        assert (await output_of(watcher, job.id)).strip() == job.result["text"]
        assert (artifacts / job.result_path).read_text().strip() == job.result["text"]
    assert [i["title"] for i in got["idea"].result["ideas"]] == ["Queues at the bakery", "Night shift"]
    assert [p["score"] for p in got["proposals"].result["proposals"]] == [9.0, 6.0]  # best first
    assert got["fact-check"].result["verdicts"] == {"supported": 1, "disputed": 1}
    assert got["humanize"].result["text"].startswith("We'll keep it simple")
    assert got["discover"].result["sources"][0]["url"] == "https://www.postgresql.org/docs/"

    # What the server received: streamed requests for the configured model, with the key,
    # a system prompt per type and the payload in the user message.
    bodies = [json.loads(body) for _, _, _, body in requests]
    assert all(b["stream"] is True and b["model"] == "fake-model" for b in bodies)
    assert all(headers.get("authorization") == "Bearer test-key" for _, _, headers, _ in requests)
    assert len({b["messages"][0]["content"] for b in bodies if "REJECT" not in str(b)}) == 5  # one per type
    assert any("how job queues work" in b["messages"][1]["content"] for b in bodies)

    # A request the provider rejects (4xx) fails at once and says why.
    assert rejected.state == "failed" and rejected.attempts == 1
    assert "HTTP 400" in rejected.error_message and "rejected" in rejected.error_message


async def test_text_types_offline_backend_is_deterministic_and_sensible(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    env = {"PGCUE_ARTIFACTS_DIR": str(tmp_path / "artifacts"), "PGCUE_LLM_BASE_URL": ""}
    worker = spawn_worker(*TEXT_TYPES, env=env)
    twice = [NewJob(type=t, channel_id="c", payload=p) for t, p in PAYLOADS.items()] * 2
    ids = await queue.enqueue_many(twice)
    await worker.started()
    await watcher.states(ids, timeout=30)
    jobs = [await queue.get(i) for i in ids]
    for job in jobs:
        assert job.state == "completed", (job.type, job.error_message)
        assert job.result["provider"] == "offline"
        assert (await output_of(watcher, job.id)).strip() == job.result["text"]
    first, second = jobs[:5], jobs[5:]
    assert [j.result for j in first] == [j.result for j in second]  # deterministic
    r = {j.type: j.result for j in first}

    assert len(r["idea"]["ideas"]) == 3 and all(i["title"] and i["angle"] for i in r["idea"]["ideas"])
    scores = [p["score"] for p in r["proposals"]["proposals"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    claims = r["fact-check"]["claims"]
    assert [c["claim"] for c in claims] == ["Water boils at 100 C at sea level.", "The moon is cheese."]
    assert "figure" in claims[0]["note"]
    assert r["humanize"]["text"] == "To start, we use the queue. It's not difficult."
    # Progressive filtering: the off-topic source and the duplicate URL are dropped.
    urls = [s["url"] for s in r["discover"]["sources"]]
    assert urls == ["https://a.example/skip", "https://c.example/q"]
