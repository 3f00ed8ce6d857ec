"""The generate type's pure parts: how a provider's answers are classified, how outputs
become files with the right content type, where the token comes from (and that it is
never shown), and the payload's shape."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest

from pgcue.core.artifacts import content_type
from pgcue.core.config import ConfigError, env_struct
from pgcue.workers.runtime.context import PermanentError
from pgcue.workers.types.generate import (
    GeneratePayload,
    GenerateSettings,
    _percent,
    content_type_of,
    extension_for,
    split_output,
)
from pgcue.workers.types.predictions import (
    InvalidKey,
    Prediction,
    RateLimited,
    Rejected,
    ReplicatePredictions,
    Unavailable,
    classify,
    looks_unavailable,
    parse_retry_after,
)


def answer(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers or {})


def test_provider_errors_are_classified_by_what_the_job_should_do() -> None:
    e = classify(answer(401, {"title": "Unauthenticated", "detail": "Invalid token.", "status": 401}), "creating")
    assert isinstance(e, InvalidKey) and str(e).startswith("invalid or expired API key") and "Invalid token." in str(e)
    assert isinstance(classify(answer(403, {"detail": "forbidden"}), "x"), InvalidKey)
    e = classify(answer(429, {"detail": "throttled"}, {"Retry-After": "7"}), "polling")
    assert isinstance(e, RateLimited) and e.retry_after == 7.0
    e = classify(answer(503, {"detail": "down"}, {"Retry-After": "3"}), "x")
    assert isinstance(e, Unavailable) and e.retry_after == 3.0
    assert isinstance(classify(answer(500, None), "x"), Unavailable)
    # Any status whose message says the model cannot run now is a "later", not a "never".
    assert isinstance(classify(answer(409, {"detail": "Model is temporarily unavailable"}), "x"), Unavailable)
    e = classify(answer(422, {"detail": "Input validation failed: prompt is required"}), "x")
    assert isinstance(e, Rejected) and str(e) == "Input validation failed: prompt is required"
    e = classify(httpx.Response(404, text="<html>nope</html>"), "x")
    assert isinstance(e, Rejected) and "nope" in str(e)


def test_retry_after_in_seconds_or_as_a_date_and_bounded() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) == 0.0 and parse_retry_after("soon") == 0.0 and parse_retry_after("-4") == 0.0
    assert parse_retry_after("99999") == 600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_unavailable_messages() -> None:
    assert looks_unavailable("Model is temporarily unavailable, retry after a minute")
    assert looks_unavailable("the GPU pool is overloaded")
    assert not looks_unavailable("Input violates the content policy")
    assert not looks_unavailable("")


def test_prediction_states() -> None:
    for status in ("starting", "processing", "something new"):
        assert Prediction(id="p", status=status).running
    for status in ("succeeded", "failed", "canceled", "aborted"):
        assert not Prediction(id="p", status=status).running
    assert Prediction(id="p", status="failed", error={"code": 1}).error_text == '{"code": 1}'


def test_outputs_are_the_urls_in_any_shape_and_the_rest_is_kept_without_queries() -> None:
    assert split_output("https://cdn.test/a.png") == (["https://cdn.test/a.png"], None)
    urls, rest = split_output(["https://cdn.test/a.png", "https://cdn.test/b.png"])
    assert urls == ["https://cdn.test/a.png", "https://cdn.test/b.png"] and rest is None
    urls, rest = split_output({"video": "https://cdn.test/v.mp4?sig=secret", "seed": 42, "caption": "a cat"})
    assert urls == ["https://cdn.test/v.mp4?sig=secret"]
    assert rest == {"video": "https://cdn.test/v.mp4", "seed": 42, "caption": "a cat"}  # no signature shown
    assert split_output("just text") == ([], "just text")
    assert split_output(None) == ([], None)
    assert split_output(["ftp://x/y", "data:image/png;base64,AAAA"])[0] == []  # only http(s) is fetched


@pytest.mark.parametrize(
    ("header", "url", "ctype", "name"),
    [
        ("image/png", "https://cdn.test/out", "image/png", "x.png"),
        ("image/jpeg; charset=binary", "https://cdn.test/out.jpeg", "image/jpeg", "x.jpg"),
        ("video/mp4", "https://cdn.test/out.bin", "video/mp4", "x.mp4"),
        ("application/octet-stream", "https://cdn.test/out.wav?x=1", "audio/wav", "x.wav"),
        ("audio/x-wav", "https://cdn.test/out", "audio/wav", "x.wav"),
        ("audio/mpeg", "https://cdn.test/out", "audio/mpeg", "x.mp3"),
        ("", "https://cdn.test/clip.webm", "video/webm", "x.webm"),
    ],
)
def test_files_get_the_extension_of_their_content_type(header: str, url: str, ctype: str, name: str) -> None:
    got = content_type_of(header, url)
    assert got == ctype
    assert "x" + extension_for(got, url) == name
    assert content_type(name).split(";")[0] == ctype  # the API serves the file as what it is


def test_progress_from_the_provider_or_its_progress_bars() -> None:
    assert _percent(Prediction(id="p", status="processing", progress=0.25)) == 25.0
    assert _percent(Prediction(id="p", status="processing", progress=60)) == 60.0
    logs = "loading\n 10%|#         | 1/10\n 45%|####      | 4/10\n"
    assert _percent(Prediction(id="p", status="processing", logs=logs)) == 45.0
    assert _percent(Prediction(id="p", status="processing", logs="booting")) is None


def test_the_token_comes_from_a_file_or_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGCUE_GENERATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with pytest.raises(PermanentError, match="no API key"):
        GenerateSettings().provider_for()
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_from_replicate_env")
    assert GenerateSettings().api_token() == "r8_from_replicate_env"
    monkeypatch.setenv("PGCUE_GENERATE_API_TOKEN", "r8_from_pgcue_env")
    assert GenerateSettings().api_token() == "r8_from_pgcue_env"
    secret = tmp_path / "token"
    secret.write_text("r8_from_a_file\n")
    settings = env_struct(GenerateSettings, "PGCUE_GENERATE_", {"PGCUE_GENERATE_API_TOKEN_FILE": str(secret)})
    assert settings.api_token() == "r8_from_a_file"
    provider = settings.provider_for()
    for shown in (repr(settings), repr(provider), str(msgspec.to_builtins(settings))):
        assert "r8_" not in shown
    missing = GenerateSettings(api_token_file=str(tmp_path / "missing"))
    with pytest.raises(PermanentError, match="cannot be read"):
        missing.api_token()


def test_bad_settings_name_their_variable() -> None:
    with pytest.raises(ConfigError, match="PGCUE_GENERATE_POLL_INTERVAL"):
        env_struct(GenerateSettings, "PGCUE_GENERATE_", {"PGCUE_GENERATE_POLL_INTERVAL": "0"})
    with pytest.raises(ConfigError, match="PGCUE_GENERATE_PROVIDER"):
        env_struct(GenerateSettings, "PGCUE_GENERATE_", {"PGCUE_GENERATE_PROVIDER": "nobody"})
    with pytest.raises(ConfigError, match="PGCUE_GENERATE_BASE_URL"):
        env_struct(GenerateSettings, "PGCUE_GENERATE_", {"PGCUE_GENERATE_BASE_URL": "file:///etc"})
    assert 3.0 <= GenerateSettings().poll_interval <= 5.0  # the provider's pace by default


def test_the_payload_names_a_kind_and_a_model_and_nothing_else() -> None:
    ok = msgspec.convert({"kind": "talking-head", "model": "owner/name:abc123", "input": {"x": 1}}, GeneratePayload)
    assert ok.kind == "talking-head" and ok.input == {"x": 1} and ok.max_bytes is None
    for bad in (
        {"kind": "image"},
        {"kind": "hologram", "model": "o/m"},
        {"kind": "image", "model": "o/m/../../x"},
        {"kind": "image", "model": "o/m", "apiToken": "r8_x"},
        {"kind": "image", "model": "o/m", "maxBytes": 0},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, GeneratePayload)


async def test_the_client_refuses_ids_and_models_that_are_not_path_segments() -> None:
    async with ReplicatePredictions("http://127.0.0.1:9/v1", "r8_x") as client:
        with pytest.raises(Rejected):
            await client.get("../models")
        with pytest.raises(Rejected):
            await client.create("a/../b", None, {}, "k")
        with pytest.raises(Unavailable):  # nothing listens there: try again later
            await client.get("abc")
