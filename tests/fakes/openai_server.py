"""A fake OpenAI chat-completions endpoint (also OpenRouter's dialect) speaking the real SSE format.

    fake = FakeOpenAI().start()
    fake.script(deltas=["Hel", "lo"], usage={"prompt_tokens": 10, "completion_tokens": 2,
                "cached_tokens": 4, "reasoning_tokens": 1, "cost": "0.00012"})
    client base URL: fake.base_url  (".../v1")
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.fakes.server import FakeServer, Recorded


def openai_model(model_id: str, owned_by: str = "fake", **extra: Any) -> dict[str, Any]:
    """One entry of `GET /models` as OpenAI (and vLLM, Ollama, LM Studio) answers it; `extra` adds
    fields some servers send (vLLM: `max_model_len`)."""
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": owned_by, **extra}


def openrouter_model(model_id: str, name: str, *, prompt: str = "0.000001", completion: str = "0.000002",
                     context_length: int = 131072, output_modalities: tuple[str, ...] = ("text",),
                     **pricing: str) -> dict[str, Any]:
    """One entry of OpenRouter's `GET /api/v1/models`: prices are USD per token, as decimal strings
    (`pricing` adds `input_cache_read`, `input_cache_write`, `internal_reasoning`, `request`...)."""
    return {
        "id": model_id, "canonical_slug": model_id, "name": name, "created": 1700000000,
        "description": f"{name}, as listed by the fake.", "context_length": context_length,
        "architecture": {"modality": "text->text", "input_modalities": ["text"],
                         "output_modalities": list(output_modalities), "tokenizer": "Other", "instruct_type": None},
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0",
                    "web_search": "0", "internal_reasoning": "0", **pricing},
        "top_provider": {"context_length": context_length, "max_completion_tokens": 16384, "is_moderated": False},
        "per_request_limits": None, "supported_parameters": ["max_tokens", "temperature"],
    }


class FakeOpenAI(FakeServer):
    """`POST {base_url}/chat/completions` (streams) and `GET {base_url}/models` (the catalogue: set
    `fake.models` to a list of `openai_model(...)` or `openrouter_model(...)` entries)."""

    def __init__(self, base_path: str = "/v1") -> None:
        super().__init__()
        self.base_path = base_path  # OpenRouter's is /api/v1
        self.models: list[dict[str, Any]] = [openai_model("gpt-4o"), openai_model("gpt-4o-mini")]
        self.models_status = 200  # another status: the catalogue answers that error
        self.script()

    @property
    def base_url(self) -> str:
        return f"{self.origin}{self.base_path}"

    def handle_other(self, handler, recorded: Recorded) -> bool:
        if recorded.method != "GET" or recorded.path != f"{self.base_path}/models":
            return False
        if self.models_status != 200:
            self._send_json(handler, self.models_status, self.error_body(self.models_status))
        else:
            self._send_json(handler, 200, {"object": "list", "data": self.models})
        return True

    def script(
        self,
        deltas: list[str] | tuple[str, ...] = ("Hello", " from", " the", " fake."),
        usage: dict[str, Any] | None = None,
        *,
        include_usage: bool = True,
        finish_reason: str = "stop",
        completion_id: str = "chatcmpl-fake123",
        model: str | None = None,
        comments: bool = False,
        usage_on_last_content_chunk: bool = False,
        reasoning: list[str] | tuple[str, ...] = (),
        reasoning_key: str = "reasoning_content",
        error_chunk: dict[str, Any] | None = None,
    ) -> None:
        """Set how every following stream answers (until scripted again).

        `usage` keys: prompt_tokens, completion_tokens, total_tokens (default: their sum),
        cached_tokens, reasoning_tokens, cost (OpenRouter; a str is sent as a JSON string, a number
        as a JSON number). `include_usage=False` ends the stream without a usage chunk.
        `comments=True` interleaves SSE comment lines (OpenRouter sends ": OPENROUTER PROCESSING").
        `reasoning` deltas come first, as `delta.<reasoning_key>` (`reasoning_content` as DeepSeek and
        xAI send it, `reasoning` as OpenRouter, Groq and Cerebras do). `error_chunk` ends the stream
        with a chunk carrying both that `error` and the usage, as OpenRouter does, then `[DONE]`.
        """
        self._deltas = list(deltas)
        self._usage = usage if usage is not None else {"prompt_tokens": 12, "completion_tokens": len(self._deltas)}
        self._include_usage = include_usage
        self._finish_reason = finish_reason
        self._completion_id = completion_id
        self._model = model
        self._comments = comments
        self._usage_on_last = usage_on_last_content_chunk
        self._reasoning = list(reasoning)
        self._reasoning_key = reasoning_key
        self._error_chunk = error_chunk

    # --- wire format ---------------------------------------------------------------------------

    def usage_json(self) -> dict[str, Any]:
        u = self._usage
        prompt, completion = u.get("prompt_tokens", 0), u.get("completion_tokens", 0)
        body: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": u.get("total_tokens", prompt + completion),
            "prompt_tokens_details": {"cached_tokens": u.get("cached_tokens", 0), "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": u.get("reasoning_tokens", 0), "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        if "cost" in u:
            body["cost"] = u["cost"]
            body["is_byok"] = False
        return body

    def _chunk(self, model: str, choices: list[dict], usage: dict | None = None) -> str:
        payload = {"id": self._completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                   "model": model, "system_fingerprint": "fp_fake", "choices": choices}
        if self._include_usage:
            payload["usage"] = usage
        return self._data(json.dumps(payload))

    def _data(self, data: str) -> str:
        prefix = ": OPENROUTER PROCESSING\n\n" if self._comments else ""
        return f"{prefix}data: {data}\n\n"

    def events_for(self, recorded: Recorded) -> list[str]:
        request = recorded.body if isinstance(recorded.body, dict) else {}
        model = self._model or request.get("model") or "gpt-fake"
        wants_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        events = [self._chunk(model, [{"index": 0, "delta": {self._reasoning_key: text}, "finish_reason": None}])
                  for text in self._reasoning]
        if self._error_chunk is not None:
            events += [self._chunk(model, [{"index": 0, "delta": {"content": d}, "finish_reason": None}])
                       for d in self._deltas]
            payload = {"id": self._completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": model, "error": self._error_chunk,
                       "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}],
                       "usage": self.usage_json()}
            return events + [self._data(json.dumps(payload)), self._data("[DONE]")]
        for index, delta in enumerate(self._deltas):
            d = {"content": delta}
            if index == 0:
                d["role"] = "assistant"
            last = index == len(self._deltas) - 1
            usage = self.usage_json() if (last and self._usage_on_last and wants_usage) else None
            events.append(self._chunk(model, [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}], usage))
        events.append(self._chunk(model, [{"index": 0, "delta": {}, "logprobs": None,
                                           "finish_reason": self._finish_reason}]))
        if self._include_usage and wants_usage and not self._usage_on_last:
            events.append(self._chunk(model, [], self.usage_json()))
        events.append(self._data("[DONE]"))
        return events
