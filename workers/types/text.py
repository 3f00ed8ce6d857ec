"""The text job types (idea, proposals, fact-check, humanize, discover) behind one provider.

A type turns its payload into a prompt; a provider streams the answer, token by token, into
the job's output (`job:output`); the type shapes the whole text into its result and the
text is kept as an artifact, "<type>.md".

Providers:
- `ChatCompletions`: any OpenAI-compatible `POST {base}/chat/completions` with `stream: true`
  (server-sent `data:` lines of chat.completion.chunk), configured by TextSettings:
  PGCUE_LLM_BASE_URL, PGCUE_LLM_MODEL, PGCUE_LLM_API_KEY, PGCUE_LLM_TIMEOUT.
- `Offline`: the default when no base URL is set. Deterministic text built from the payload,
  so `make run` does real, repeatable work with no network and no key.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import httpx
import msgspec

from pgcue.core.config import env_struct
from pgcue.workers.runtime.context import JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type

MAX_INPUT = 50_000
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


class TextSettings(msgspec.Struct, frozen=True, kw_only=True):
    """PGCUE_LLM_*: the text types' model, an OpenAI-compatible chat-completions endpoint
    such as https://api.openai.com/v1; an empty base URL means the deterministic offline
    backend."""

    base_url: str = ""
    model: str = "gpt-4o-mini"
    api_key: str = ""
    timeout: float = 120.0


@functools.cache
def text_settings() -> TextSettings:
    return env_struct(TextSettings, "PGCUE_LLM_")


Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_INPUT)]


class IdeaPayload(msgspec.Struct, kw_only=True):
    topic: Text
    count: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    audience: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ProposalsPayload(msgspec.Struct, kw_only=True):
    brief: Text
    count: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3


class TextPayload(msgspec.Struct, kw_only=True):
    text: Text


class HumanizePayload(msgspec.Struct, kw_only=True):
    text: Text
    tone: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class Candidate(msgspec.Struct, kw_only=True):
    title: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    description: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    url: Annotated[str, msgspec.Meta(max_length=4096)] = ""


class DiscoverPayload(msgspec.Struct, kw_only=True):
    query: Text
    candidates: Annotated[list[Candidate], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    limit: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5


@dataclass(frozen=True)
class Prompt:
    type: str
    system: str
    user: str
    payload: dict[str, Any]
    max_tokens: int = 1200


class Provider(Protocol):
    name: str
    model: str

    def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer's text, in pieces as they come."""
        ...


# --- the OpenAI-compatible HTTP backend ----------------------------------------------------


class ChatCompletions:
    name = "chat-completions"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 120.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        body = {
            "model": self.model,
            "stream": True,
            "max_tokens": prompt.max_tokens,
            "temperature": 0.7,
            "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}],
        }
        headers = {"accept": "text/event-stream"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=10.0)) as client,
                client.stream("POST", self.url, json=body, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    detail = (await response.aread()).decode(errors="replace")[:500]
                    message = f"model endpoint {self.url} answered HTTP {response.status_code}: {detail}"
                    if response.status_code in TRANSIENT_STATUS:
                        raise RuntimeError(message + " (transient; will retry)")
                    raise PermanentError(message)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event: lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise RuntimeError(f"model endpoint sent a malformed chunk: {data[:200]}") from None
                    if "error" in chunk:
                        raise RuntimeError(f"model endpoint reported an error: {chunk['error']}")
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except httpx.TransportError as exc:
            raise RuntimeError(f"model endpoint {self.url}: {type(exc).__name__}: {exc} (transient)") from exc


# --- the deterministic offline backend ---------------------------------------------------


class Offline:
    name = "offline"
    model = "pgcue-offline-1"

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        text = TASKS[prompt.type].offline(prompt.payload)
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield piece


def provider_for(settings: TextSettings) -> Provider:
    if settings.base_url:
        return ChatCompletions(settings.base_url, settings.model, settings.api_key, settings.timeout)
    return Offline()


# --- the types: prompt, offline answer, result shape ------------------------------------------

_WORDS = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOP = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be but by for from has have in is it its of on or that the this to was were will with "
        "about into over under than then there their they we you your our how what why when which who",
    )
)


def _text(payload: dict[str, Any], field: str) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value.strip():
        raise PermanentError(f"payload.{field} must be a non-empty string")
    if len(value) > MAX_INPUT:
        raise PermanentError(f"payload.{field} is longer than {MAX_INPUT} characters")
    return value.strip()


def _count(payload: dict[str, Any], default: int, high: int = 20) -> int:
    try:
        n = int(payload.get("count", default))
    except (TypeError, ValueError):
        raise PermanentError("payload.count must be an integer") from None
    if not 1 <= n <= high:
        raise PermanentError(f"payload.count must be from 1 to {high}")
    return n


def _keywords(text: str, n: int = 6) -> list[str]:
    seen: dict[str, int] = {}
    for word in _WORDS.findall(text.lower()):
        if word not in _STOP and len(word) > 2:
            seen[word] = seen.get(word, 0) + 1
    return [w for w, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))][:n] or ["the topic"]


def _lines(text: str) -> list[str]:
    """List items of a model's answer: numbered or bulleted lines, markers removed."""
    items = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:\d+[.)]|[-*•])\s+(.*\S)", line)
        if m:
            items.append(m.group(1))
    return items


@dataclass(frozen=True)
class Task:
    name: str
    prompt: Callable[[dict[str, Any]], Prompt]
    offline: Callable[[dict[str, Any]], str]
    shape: Callable[[str], dict[str, Any]]
    payload: type
    description: str


def _idea_prompt(p: dict[str, Any]) -> Prompt:
    topic, n = _text(p, "topic"), _count(p, 5)
    audience = str(p.get("audience") or "a general audience")
    return Prompt(
        "idea",
        "You are a video studio's idea writer. Answer with a numbered list only: one idea per line, "
        "a short title, a colon, and one sentence on the angle.",
        f"Give {n} distinct video ideas about: {topic}\nAudience: {audience}",
        p,
    )


def _idea_offline(p: dict[str, Any]) -> str:
    topic, n = _text(p, "topic"), _count(p, 5)
    keys = _keywords(topic)
    angles = [
        ("The beginner's guide to {k}", "explain {t} from first principles, with one worked example"),
        ("{K}: myths and facts", "take the three most repeated claims about {k} and test each one"),
        ("A day with {k}", "follow one person whose work depends on {k}, start to finish"),
        ("{K} in numbers", "tell the story of {t} through five figures, one per scene"),
        ("What nobody tells you about {k}", "the trade-offs of {t} that experts argue about"),
        ("{K}, then and now", "compare how {k} worked twenty years ago with today"),
        ("Build it yourself: {k}", "a hands-on project that shows {t} working"),
        ("The future of {k}", "three developments that could change {t} within five years"),
    ]
    out = []
    for i in range(n):
        title, angle = angles[i % len(angles)]
        k = keys[i % len(keys)]
        suffix = f" (part {i // len(angles) + 1})" if i >= len(angles) else ""
        out.append(f"{i + 1}. {title.format(k=k, K=k.capitalize())}{suffix}: {angle.format(k=k, t=topic)}.")
    return "\n".join(out) + "\n"


def _idea_shape(text: str) -> dict[str, Any]:
    ideas = []
    for item in _lines(text):
        title, _, angle = item.partition(":")
        ideas.append({"title": title.strip(), "angle": angle.strip()})
    return {"ideas": ideas}


def _proposals_prompt(p: dict[str, Any]) -> Prompt:
    brief, n = _text(p, "brief"), _count(p, 3, 10)
    return Prompt(
        "proposals",
        "You write and score video proposals. Answer with a numbered list only: per line a title, a colon, "
        "a two-sentence pitch, then the score in the form (score: N/10).",
        f"Write {n} proposals for this brief and score each for audience fit and feasibility:\n{brief}",
        p,
    )


def _proposals_offline(p: dict[str, Any]) -> str:
    brief, n = _text(p, "brief"), _count(p, 3, 10)
    keys = _keywords(brief)
    formats = ["explainer", "documentary short", "interview", "listicle", "case study", "tutorial"]
    out = []
    for i in range(n):
        k = keys[i % len(keys)]
        fmt = formats[i % len(formats)]
        # Deterministic score: more keywords of the brief covered, higher the score.
        score = max(4, 9 - i - (0 if len(keys) > i else 1))
        a = "an" if fmt[0] in "aeiou" else "a"
        out.append(
            f"{i + 1}. {k.capitalize()} as {a} {fmt}: {a} {fmt} built around {k}, drawn from the brief. "
            f"It covers {', '.join(keys[:3])} in under ten minutes. (score: {score}/10)"
        )
    return "\n".join(out) + "\n"


def _proposals_shape(text: str) -> dict[str, Any]:
    proposals: list[dict[str, Any]] = []
    for item in _lines(text):
        m = re.search(r"\(?score:?\s*(\d+(?:\.\d+)?)\s*/\s*10\)?", item, re.I)
        score = float(m.group(1)) if m else None
        body = (item[: m.start()] if m else item).strip()
        title, _, pitch = body.partition(":")
        proposals.append({"title": title.strip(), "pitch": pitch.strip(), "score": score})
    proposals.sort(key=lambda x: -float(x["score"] or 0))
    return {"proposals": proposals}


def _fact_prompt(p: dict[str, Any]) -> Prompt:
    return Prompt(
        "fact-check",
        "You are a careful fact-checker. List each checkable claim of the text on its own line as "
        "'- <claim> :: <supported|disputed|unverified> :: <one-sentence reason>'.",
        f"Fact-check this text:\n{_text(p, 'text')}",
        p,
    )


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def _fact_offline(p: dict[str, Any]) -> str:
    lines = []
    for sentence in _sentences(_text(p, "text")):
        if re.search(r"\d", sentence):
            note = "contains a figure or date; the offline backend cannot check sources, so cite one"
        elif re.search(r"\b(always|never|all|none|every|best|worst|first|only)\b", sentence, re.I):
            note = "an absolute claim; needs a source or softer wording"
        elif re.search(r"\b(is|are|was|were|has|have|causes?|shows?)\b", sentence, re.I):
            note = "a factual statement; not checked offline"
        else:
            continue
        lines.append(f"- {sentence} :: unverified :: {note}")
    return ("\n".join(lines) or "- (no checkable claims found) :: unverified :: nothing to check") + "\n"


def _fact_shape(text: str) -> dict[str, Any]:
    claims = []
    for item in _lines(text):
        parts = [x.strip() for x in item.split("::")]
        claim = parts[0]
        verdict = parts[1].lower() if len(parts) > 1 else "unverified"
        claims.append({"claim": claim, "verdict": verdict, "note": parts[2] if len(parts) > 2 else ""})
    counts: dict[str, int] = {}
    for c in claims:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    return {"claims": claims, "verdicts": counts}


_PLAIN = [
    (r"\butili[sz]e\b", "use"),
    (r"\bin order to\b", "to"),
    (r"\bfurthermore\b", "also"),
    (r"\bmoreover\b", "what's more"),
    (r"\btherefore\b", "so"),
    (r"\bcommence\b", "start"),
    (r"\bapproximately\b", "about"),
    (r"\bnumerous\b", "many"),
    (r"\bsubsequently\b", "then"),
    (r"\bprior to\b", "before"),
    (r"\bdo not\b", "don't"),
    (r"\bdoes not\b", "doesn't"),
    (r"\bcannot\b", "can't"),
    (r"\bit is\b", "it's"),
    (r"\bwe are\b", "we're"),
    (r"\byou are\b", "you're"),
    (r"\bthey are\b", "they're"),
    (r"\bwill not\b", "won't"),
]


def _humanize_prompt(p: dict[str, Any]) -> Prompt:
    tone = str(p.get("tone") or "friendly")
    return Prompt(
        "humanize",
        f"Rewrite text so it reads as written by a person: plain words, contractions, varied sentence length, "
        f"a {tone} tone. Keep every fact. Answer with the rewritten text only.",
        _text(p, "text"),
        p,
    )


def _humanize_offline(p: dict[str, Any]) -> str:
    text = _text(p, "text")
    for pattern, plain in _PLAIN:

        def keep_case(m: re.Match[str], plain: str = plain) -> str:
            return plain[0].upper() + plain[1:] if m.group(0)[0].isupper() else plain

        text = re.sub(pattern, keep_case, text, flags=re.I)
    return text + "\n"


def _humanize_shape(text: str) -> dict[str, Any]:
    return {"words": len(text.split())}


def _discover_prompt(p: dict[str, Any]) -> Prompt:
    query = _text(p, "query")
    candidates = p.get("candidates") or []
    listing = "\n".join(f"- {c.get('title', '')}: {c.get('description', '')} <{c.get('url', '')}>" for c in candidates)
    return Prompt(
        "discover",
        "You are a research assistant. Filter in rounds: drop off-topic sources, then duplicates, then weak ones. "
        "Answer with a numbered list of the sources worth keeping, best first: '<title> :: <url> :: <why>'.",
        f"Research question: {query}\n" + (f"Candidate sources:\n{listing}" if listing else "Suggest sources."),
        p,
    )


def _discover_offline(p: dict[str, Any]) -> str:
    query = _text(p, "query")
    terms = set(_keywords(query, 10))
    candidates = [c for c in (p.get("candidates") or []) if isinstance(c, dict)]
    limit = _count({"count": p.get("limit", 5)}, 5, 50)
    # Round 1: relevance (query terms in title/description). Round 2: duplicates by URL or
    # title. Round 3: the best `limit`.
    scored = []
    for c in candidates:
        words = set(_keywords(f"{c.get('title', '')} {c.get('description', '')}", 50))
        hits = len(terms & words)
        if hits:
            scored.append((hits, str(c.get("title", "")), c))
    seen: set[str] = set()
    kept = []
    for hits, title, c in sorted(scored, key=lambda x: (-x[0], x[1])):
        ident = str(c.get("url") or title).lower()
        if ident in seen:
            continue
        seen.add(ident)
        kept.append((hits, c))
    lines = [
        f"{i + 1}. {c.get('title', '')} :: {c.get('url', '')} :: matches {hits} of the question's key terms"
        for i, (hits, c) in enumerate(kept[:limit])
    ]
    if not candidates:
        lines = [
            f"{i + 1}. Search: {term} :: :: a starting query for '{query}'"
            for i, term in enumerate(sorted(terms)[:limit])
        ]
    return "\n".join(lines) + "\n"


def _discover_shape(text: str) -> dict[str, Any]:
    sources = []
    for item in _lines(text):
        parts = [x.strip() for x in item.split("::")]
        sources.append(
            {"title": parts[0], "url": parts[1] if len(parts) > 1 else "", "why": parts[2] if len(parts) > 2 else ""}
        )
    return {"sources": sources}


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("idea", _idea_prompt, _idea_offline, _idea_shape, IdeaPayload, "AI idea generation"),
        Task(
            "proposals",
            _proposals_prompt,
            _proposals_offline,
            _proposals_shape,
            ProposalsPayload,
            "AI proposal generation and scoring",
        ),
        Task("fact-check", _fact_prompt, _fact_offline, _fact_shape, TextPayload, "content fact-checking"),
        Task("humanize", _humanize_prompt, _humanize_offline, _humanize_shape, HumanizePayload, "text humanization"),
        Task(
            "discover",
            _discover_prompt,
            _discover_offline,
            _discover_shape,
            DiscoverPayload,
            "research with progressive filtering",
        ),
    )
}


async def run_text(ctx: JobContext, task: Task, provider: Provider | None = None) -> Result:
    if not isinstance(ctx.payload, dict):
        raise PermanentError(f"{task.name} needs a payload object")
    ctx.payload_as(task.payload)  # the schema's checks, before any work
    prompt = task.prompt(ctx.payload)
    provider = provider or provider_for(text_settings())
    await ctx.stage("generate", provider=provider.name, model=provider.model)
    parts: list[str] = []
    produced = 0
    async for piece in provider.stream(prompt):
        parts.append(piece)
        ctx.output(piece)
        produced += 1
        ctx.progress(min(95, 100 * produced / prompt.max_tokens), f"{produced} chunks received")
        await ctx.checkpoint()
    text = "".join(parts).strip()
    if not text:
        raise RuntimeError(f"{provider.name} returned no text")
    await ctx.stage("shape")
    name = f"{task.name}.md"
    async with ctx.artifacts.writing(name) as temp:
        temp.write_text(text + "\n")
    ctx.progress(100, "done")
    result = {"text": text, **task.shape(text), "provider": provider.name, "model": provider.model}
    return Result(result, ctx.artifacts.key(name))


def _register(task: Task) -> None:
    async def handler(ctx: JobContext) -> Result:
        return await run_text(ctx, task)

    handler.__name__ = task.name.replace("-", "_")
    # The studio's text workers: a paid feature, two at once per process, 2 GiB each.
    job_type(
        task.name,
        plan="paid",
        concurrency=2,
        memory_mb=2048,
        timeout_seconds=30 * 60,
        payload=task.payload,
        description=task.description,
    )(handler)


for _task in TASKS.values():
    _register(_task)
