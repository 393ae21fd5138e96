"""The replay harness itself, apart from the app: the fake sends each recording as the recordings
README says, and the real SDKs read those bytes (answer text and raw usage as recorded).

If one of these fails, a failure in test_recordings.py may be the harness's; if they pass, the
pipeline got exactly the recorded bytes through the real SDK.
"""

from __future__ import annotations

import http.client
import json

import pytest

from tests.fakes.recordings import (
    ERROR_STATUS,
    RECORDINGS,
    RECORDINGS_DIR,
    RecordedProvider,
    answer_text,
    kind_of,
    recorded_payloads,
    recording_path,
    recordings_available,
)

if not recordings_available():
    pytest.skip(f"no provider recordings at {RECORDINGS_DIR}", allow_module_level=True)

import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

NAMES = list(RECORDINGS)


def _post(fake: RecordedProvider, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request("POST", path, body=b'{"model": "m", "stream": true}', headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _path(dialect: str) -> str:
    return "/v1/chat/completions" if dialect == "openai" else "/v1beta/models/m:streamGenerateContent?alt=sse"


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_the_fake_sends_the_recorded_bytes(name):
    dialect = RECORDINGS[name]
    path = recording_path(name)
    kind = kind_of(path)
    end = b"\r\n\r\n" if dialect == "gemini" else b"\n\n"
    with RecordedProvider(name, dialect) as fake:
        status, headers, body = _post(fake, _path(dialect))
        again = _post(fake, _path(dialect))
        count_status, _, _ = _post(fake, "/v1beta/models/m:countTokens")
        assert fake.calls == 2 and len(fake.requests) == 3 and count_status == 503
    assert (again[0], again[2]) == (status, body)  # every request gets the same recording
    # It closes the socket after each reply and says so: a client that pooled it could send its
    # next request (a retry 0 s later) onto the closing socket and see "could not reach".
    assert headers["connection"] == "close"

    if name in ERROR_STATUS:
        assert status == ERROR_STATUS[name]
        if kind == ".json":
            assert headers["content-type"] == "application/json"
            assert body == path.read_bytes()  # sent whole
        else:  # gm-404-notfound: recorded as an event-stream response carrying the error JSON
            assert headers["content-type"] == "text/event-stream"
            assert json.loads(body) == json.loads(path.read_text())[0]
        return

    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    if kind == ".sse":
        assert body == path.read_bytes()  # byte for byte, CRLF and comments kept
    elif kind == ".chunks.txt":
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
        expected = b"".join(b"data: " + line + end for line in lines)
        if dialect == "openai":
            expected += b"data: [DONE]" + end
        assert body == expected
    else:  # .segments.json: one compact event per recorded segment, values unchanged
        segments = json.loads(path.read_text())
        frames = [f for f in body.split(end) if f]
        assert body.endswith(end) and len(frames) == len(segments)
        for frame, segment in zip(frames, segments, strict=True):
            assert frame.startswith(b"data: {") and b"\n" not in frame
            assert json.loads(frame[len(b"data: "):]) == segment
            assert frame[len(b"data: "):] == json.dumps(segment, separators=(",", ":"), ensure_ascii=False).encode()


def _last(payloads: list[dict], key: str) -> dict:
    return [p[key] for p in payloads if p.get(key)][-1]


@pytest.mark.parametrize("name", [n for n, d in RECORDINGS.items() if d == "openai"])
async def test_the_openai_sdk_reads_the_recording(name):
    with RecordedProvider(name, "openai") as fake:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
        text: list[str] = []
        usage = None
        try:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hello"}], stream=True,
                stream_options={"include_usage": True})
            async for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    text.append(choice.delta.content or "")
        except openai.APIStatusError as exc:
            assert name in ERROR_STATUS and exc.status_code == ERROR_STATUS[name]
            assert fake.calls == 1
            return
        except openai.APIError as exc:
            # The SDK raises on a chunk carrying `error` (and drops the rest of that chunk).
            assert name == "or-minimax-error-chunk" and exc.message == "Token limit reached"
            assert "".join(text) == answer_text(name, "openai") == ""
            return
        finally:
            await client.close()
    assert name not in ERROR_STATUS and name != "or-minimax-error-chunk"
    assert "".join(text) == answer_text(name, "openai")
    recorded = _last(recorded_payloads(name, "openai"), "usage")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        recorded["prompt_tokens"], recorded["completion_tokens"], recorded["total_tokens"])


@pytest.mark.parametrize("name", [n for n, d in RECORDINGS.items() if d == "gemini"])
async def test_the_genai_sdk_reads_the_recording(name):
    with RecordedProvider(name, "gemini") as fake:
        client = genai.Client(api_key="test-key", http_options=types.HttpOptions(
            base_url=fake.base_url, retry_options=types.HttpRetryOptions(attempts=1)))
        text: list[str] = []
        meta = None
        try:
            async for chunk in await client.aio.models.generate_content_stream(model="m", contents="Hello"):
                meta = chunk.usage_metadata or meta
                for candidate in (chunk.candidates or [])[:1]:
                    for part in (candidate.content.parts if candidate.content else None) or []:
                        if part.text and not part.thought:
                            text.append(part.text)
        except genai_errors.APIError as exc:
            assert name in ERROR_STATUS and exc.code == ERROR_STATUS[name]
            assert fake.calls == 1
            return
        finally:
            await client.aio.aclose()
    assert name not in ERROR_STATUS
    assert "".join(text) == answer_text(name, "gemini")
    recorded = _last(recorded_payloads(name, "gemini"), "usageMetadata")
    assert (meta.prompt_token_count, meta.candidates_token_count, meta.thoughts_token_count,
            meta.total_token_count, meta.cached_content_token_count, meta.tool_use_prompt_token_count) == (
        recorded.get("promptTokenCount"), recorded.get("candidatesTokenCount"), recorded.get("thoughtsTokenCount"),
        recorded.get("totalTokenCount"), recorded.get("cachedContentTokenCount"),
        recorded.get("toolUsePromptTokenCount"))
