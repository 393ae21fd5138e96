"""A fake Gemini API (`models/{model}:streamGenerateContent?alt=sse`, `:countTokens`) speaking the
real wire format, with cumulative `usageMetadata` the way Gemini sends it.

    fake = FakeGemini().start()
    fake.script(deltas=["Hel", "lo"], usage={"prompt": 10, "candidates": 2, "thoughts": 30, "cached": 4})
    client base URL: fake.base_url
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import FakeServer, Recorded

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def gemini_model(model_id: str, display_name: str, *, input_limit: int = 1048576,
                 methods: tuple[str, ...] = ("generateContent", "countTokens", "createCachedContent")) -> dict[str, Any]:
    """One entry of Gemini's `GET /v1beta/models` (embedding models list `embedContent` instead)."""
    return {"name": f"models/{model_id}", "version": "001", "displayName": display_name,
            "description": f"{display_name}, as listed by the fake.", "inputTokenLimit": input_limit,
            "outputTokenLimit": 65536, "supportedGenerationMethods": list(methods), "temperature": 1,
            "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True}


class FakeGemini(FakeServer):
    """Streams, countTokens, and `GET .../models` (the catalogue, paged by `pageSize`/`pageToken` as
    Gemini does: set `fake.models` to a list of `gemini_model(...)` entries)."""

    def __init__(self) -> None:
        super().__init__()
        self.count_tokens_answer: int | None = None  # None: countTokens answers 503
        self.models: list[dict[str, Any]] = [gemini_model("gemini-2.5-flash", "Gemini 2.5 Flash")]
        self.models_status = 200  # another status: the catalogue answers that error
        self.script()

    @property
    def base_url(self) -> str:
        return self.origin

    def script(
        self,
        deltas: list[str] | tuple[str, ...] = ("Hello", " from", " Gemini."),
        usage: dict[str, int] | None = None,
        *,
        thoughts: list[str] | tuple[str, ...] = (),
        finish_reason: str = "STOP",
        response_id: str = "resp-fake-gemini",
        model_version: str | None = None,
        include_usage: bool = True,
        final_chunk_without_text: bool = True,
    ) -> None:
        """Set how every following stream answers (until scripted again).

        `usage` keys (final figures): prompt, candidates, thoughts, cached, tool_prompt (sent as
        toolUsePromptTokenCount), total (default: prompt + tool_prompt + candidates + thoughts). Every chunk carries the usage so far (cumulative, as Gemini does);
        with `final_chunk_without_text` the final figures arrive on a last chunk with no text.
        `thoughts` are thought-summary parts (`"thought": true`), which are not answer text.
        """
        self._deltas = list(deltas)
        self._usage = usage if usage is not None else {"prompt": 9, "candidates": len(self._deltas)}
        self._thoughts = list(thoughts)
        self._finish_reason = finish_reason
        self._response_id = response_id
        self._model_version = model_version
        self._include_usage = include_usage
        self._final_without_text = final_chunk_without_text

    def error_body(self, status: int) -> Any:
        return {"error": {"code": status, "message": f"fake error {status}", "status": STATUS_NAMES.get(status, "UNKNOWN")}}

    # --- wire format ---------------------------------------------------------------------------

    def usage_json(self, fraction: float = 1.0) -> dict[str, Any]:
        u = self._usage
        prompt = u.get("prompt", 0)
        candidates = round(u.get("candidates", 0) * fraction)
        thoughts = u.get("thoughts", 0)
        tool = u.get("tool_prompt", 0)
        body: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": u.get("total", prompt + tool + u.get("candidates", 0) + thoughts) if fraction >= 1
            else prompt + tool + candidates + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if tool:
            body["toolUsePromptTokenCount"] = tool
        if thoughts:
            body["thoughtsTokenCount"] = thoughts
        if u.get("cached"):
            body["cachedContentTokenCount"] = u["cached"]
            body["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": u["cached"]}]
        return body

    def _event(self, model: str, parts: list[dict] | None, usage: dict | None, finish: str | None = None) -> str:
        candidate: dict[str, Any] = {"content": {"parts": parts or [], "role": "model"}, "index": 0}
        if parts is None:
            candidate["content"] = {"role": "model"}
        if finish:
            candidate["finishReason"] = finish
        payload: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": self._response_id}
        if usage is not None and self._include_usage:
            payload["usageMetadata"] = usage
        return f"data: {json.dumps(payload)}\r\n\r\n"

    def events_for(self, recorded: Recorded) -> list[str]:
        model = self._model_version or recorded.path.rsplit("/", 1)[-1].split(":", 1)[0]
        events = [self._event(model, [{"text": t, "thought": True}], self.usage_json(0.0)) for t in self._thoughts]
        n = len(self._deltas)
        for index, delta in enumerate(self._deltas):
            last = index == n - 1
            finish = self._finish_reason if last and not self._final_without_text else None
            fraction = 1.0 if last and not self._final_without_text else (index + 1) / (n + 1)
            events.append(self._event(model, [{"text": delta}], self.usage_json(fraction), finish))
        if self._final_without_text or not n:
            events.append(self._event(model, None, self.usage_json(1.0), self._finish_reason))
        return events

    def handle_other(self, handler: BaseHTTPRequestHandler, recorded: Recorded) -> bool:
        if recorded.method == "GET" and recorded.path in ("/v1/models", "/v1beta/models"):
            if self.models_status != 200:
                self._send_json(handler, self.models_status, self.error_body(self.models_status))
                return True
            size = int((recorded.query.get("pageSize") or ["50"])[0])
            start = int((recorded.query.get("pageToken") or ["0"])[0])
            page: dict[str, Any] = {"models": self.models[start:start + size]}
            if start + size < len(self.models):
                page["nextPageToken"] = str(start + size)
            self._send_json(handler, 200, page)
            return True
        if not recorded.path.endswith(":countTokens"):
            return False
        if self.count_tokens_answer is None:
            self._send_json(handler, 503, self.error_body(503))
        else:
            self._send_json(handler, 200, {"totalTokens": self.count_tokens_answer})
        return True
