"""Replays REAL recorded provider responses, byte for byte, to the real SDKs.

The recordings live beside the repository in `../shared/provider-recordings/` (third-party data,
never copied in here); `/work/shared/provider-recordings/README.md` says what each one is and how
each kind goes on the wire:

* `.sse`           the recorded HTTP body string, sent exactly as is (CRLF, SSE comments and all);
* `.chunks.txt`    one recorded chunk JSON per line, each sent as `data: <line>` + blank line
                   (`\\r\\n\\r\\n` on Gemini routes, `\\n\\n` on OpenAI-style ones, which then end
                   with `data: [DONE]`);
* `.segments.json` a list of parsed response objects, each re-serialised compactly as one `data:`
                   event (Gemini); `gm-404-notfound` is an error recorded with status 404 and
                   Content-Type text/event-stream, whose body (the one segment) goes out so;
* `.json`          an error body, sent whole (the file's bytes) with its recorded status as
                   application/json.

    with RecordedProvider("or-o3", dialect="openai") as fake:
        settings.PROVIDERS["openrouter"] = {"api_key": "...", "base_url": fake.base_url}
        ...
        assert fake.calls == 1

Every request (any POST path: `/v1/chat/completions`, `.../models/<m>:streamGenerateContent`)
gets the same recording; `fake.requests` records them. A Gemini `:countTokens` request is not a
generation call: it answers 503 (the adapter then estimates) and is left out of `fake.calls`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.fakes.server import Action, FakeServer, Recorded

# /work/shared/provider-recordings: beside the repository root, never inside it.
RECORDINGS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "provider-recordings"

# Every recording, and the wire dialect of the route it was recorded on.
RECORDINGS: dict[str, str] = {
    "openai-gpt41nano-text": "openai", "azure-gpt5nano-router": "openai", "xai-grok-reasoning": "openai",
    "cerebras-cached-reasoning": "openai", "deepseek-reasoning": "openai", "deepseek-length": "openai",
    "groq-reasoning": "openai", "openai-400-legacy-param": "openai",
    "or-grok4-cached": "openai", "or-o3": "openai", "or-claude-reasoning": "openai",
    "or-minimax-error-chunk": "openai", "or-429": "openai",
    "gm25flash-maxtokens": "gemini", "gm25flash-sysinstr": "gemini", "gm3pro-thoughtsig": "gemini",
    "gm25pro-thought-parts": "gemini", "gm25flash-live-usage": "gemini", "gm25flash-mcp-cached": "gemini",
    "gm25flash-thinking-only": "gemini", "gm-429-retryinfo": "gemini", "gm-404-notfound": "gemini",
}

# Status of the recorded errors (README table / sources.json).
ERROR_STATUS = {
    "openai-400-legacy-param": 400,
    "or-429": 429,
    "gm-429-retryinfo": 429,
    "gm-404-notfound": 404,
}
_SUFFIXES = (".sse", ".chunks.txt", ".segments.json", ".json")


def recordings_available() -> bool:
    return (RECORDINGS_DIR / "README.md").is_file()


def recording_path(name: str) -> Path:
    for suffix in _SUFFIXES:
        path = RECORDINGS_DIR / f"{name}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no recording {name!r} in {RECORDINGS_DIR}")


def kind_of(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise ValueError(name)


def _split_events(body: str) -> list[str]:
    """The body cut after each blank line (LF or CRLF ends kept as they are): it goes out one SSE
    event per chunk, and the pieces join back to exactly the recorded body."""
    pieces = [p for p in re.split(r"(?<=\r\n\r\n)|(?<=\n\n)", body) if p]
    assert "".join(pieces) == body
    return pieces


@dataclass(frozen=True)
class Reply:
    """What the fake answers to every generation request."""

    status: int
    content_type: str
    chunks: tuple[str, ...]  # body pieces; sent chunked when the content type is an event stream

    @property
    def body(self) -> str:
        return "".join(self.chunks)

    @property
    def chunked(self) -> bool:
        return self.content_type.startswith("text/event-stream")


def reply_for(name: str, dialect: str) -> Reply:
    """How recording `name` goes on the wire for a client of `dialect` ("openai" or "gemini")."""
    if dialect not in ("openai", "gemini"):
        raise ValueError(dialect)
    path = recording_path(name)
    kind = kind_of(path)
    end = "\r\n\r\n" if dialect == "gemini" else "\n\n"
    if kind == ".sse":
        # newline="" keeps the recorded line ends (CRLF) untranslated.
        with path.open(encoding="utf-8", newline="") as f:
            body = f.read()
        return Reply(200, "text/event-stream", tuple(_split_events(body)))
    if kind == ".chunks.txt":
        with path.open(encoding="utf-8", newline="") as f:
            lines = [line.rstrip("\r\n") for line in f]
        events = [f"data: {line}{end}" for line in lines if line.strip()]
        if dialect == "openai":
            events.append(f"data: [DONE]{end}")
        return Reply(200, "text/event-stream", tuple(events))
    if kind == ".segments.json":
        segments = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(segments, list) and segments, path
        compact = [json.dumps(segment, separators=(",", ":"), ensure_ascii=False) for segment in segments]
        if name in ERROR_STATUS:
            # Recorded as status 404 with Content-Type text/event-stream and the error JSON as its body.
            assert len(compact) == 1, path
            return Reply(ERROR_STATUS[name], "text/event-stream", (compact[0],))
        return Reply(200, "text/event-stream", tuple(f"data: {c}{end}" for c in compact))
    # .json: a recorded error body, sent whole with its recorded status.
    return Reply(ERROR_STATUS[name], "application/json", (path.read_text(encoding="utf-8"),))


def recorded_payloads(name: str, dialect: str) -> list[Any]:
    """The JSON objects of a recording's `data:` events (not counting [DONE]), parsed from the very
    bytes the fake sends: what a test compares the SDK's result against."""
    reply = reply_for(name, dialect)
    if reply.status != 200:
        return [json.loads(reply.body)]
    payloads = []
    for frame in re.split(r"\r\n\r\n|\n\n", reply.body):
        data = [line[len("data:"):].lstrip(" ") for line in re.split(r"\r\n|\n", frame) if line.startswith("data:")]
        if not data or data == ["[DONE]"]:
            continue
        payloads.append(json.loads("\n".join(data)))
    return payloads


def answer_text(name: str, dialect: str) -> str:
    """The recording's ANSWER text: `delta.content` (OpenAI-style) or the non-thought `text` parts of
    the first candidate (Gemini). Reasoning and thought text is not answer text."""
    out: list[str] = []
    for payload in recorded_payloads(name, dialect):
        if dialect == "openai":
            for choice in payload.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    out.append(content)
        else:
            for candidate in (payload.get("candidates") or ())[:1]:
                for part in (candidate.get("content") or {}).get("parts") or ():
                    if part.get("text") and not part.get("thought"):
                        out.append(part["text"])
    return "".join(out)


def completion_id(name: str, dialect: str) -> str:
    """The provider's completion id: the first non-empty `id` (OpenAI-style) or `responseId`."""
    key = "id" if dialect == "openai" else "responseId"
    return next(p[key] for p in recorded_payloads(name, dialect) if p.get(key))


class RecordedProvider(FakeServer):
    """A FakeServer that answers every generation request with one recording, byte for byte."""

    def __init__(self, name: str, dialect: str) -> None:
        super().__init__()
        self.name = name
        self.dialect = dialect
        self.reply = reply_for(name, dialect)

    @property
    def base_url(self) -> str:
        # The OpenAI SDK appends /chat/completions to a base URL ending in /v1; google-genai appends
        # /<api version>/models/<model>:streamGenerateContent to the origin.
        return f"{self.origin}/v1" if self.dialect == "openai" else self.origin

    @property
    def calls(self) -> int:
        """Generation requests received (retries included; countTokens not)."""
        return sum(1 for r in self.requests if not r.path.endswith(":countTokens"))

    def events_for(self, recorded: Recorded) -> list[str]:
        return list(self.reply.chunks)

    def handle_other(self, handler: BaseHTTPRequestHandler, recorded: Recorded) -> bool:
        if recorded.path.endswith(":countTokens"):
            self._send_json(handler, 503, {"error": {"code": 503, "message": "not recorded", "status": "UNAVAILABLE"}})
            return True
        reply = self.reply
        if reply.status == 200:
            # FakeServer's own chunked event-stream writer, with the recorded pieces as the events.
            self._send_stream(handler, Action("stream", events=list(reply.chunks)))
            return True
        data = reply.body.encode("utf-8")
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        # We close after the reply, so say so: otherwise a retry 0 s later may reuse the closing socket.
        handler.send_header("Connection", "close")
        if reply.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        else:
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        handler.wfile.flush()
        handler.close_connection = True
        return True
