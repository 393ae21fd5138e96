"""REAL recorded provider responses, replayed byte for byte to the real openai and google-genai SDKs,
through the exchange pipeline's WebSocket and /send doors; every figure checked against the
recordings README's table (`../shared/provider-recordings/README.md`) and API.md's contract.

Nothing here mocks an SDK: `tests.fakes.recordings.RecordedProvider` is a local HTTP server that
sends the recorded bytes. A success recording whose answer text comes out right proves the SDK
parsed the bytes, so a wrong figure next to it is the pipeline's, not the harness's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from tests.fakes.recordings import RECORDINGS, RECORDINGS_DIR, recordings_available

if not recordings_available():
    pytest.skip(f"no provider recordings at {RECORDINGS_DIR}", allow_module_level=True)

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from knox.models import AuthToken

from chat.models import Conversation, Message
from chatlima.asgi import application
from tests.fakes.fixtures import _point
from tests.fakes.recordings import RecordedProvider
from tests.fakes.recordings import answer_text as recorded_answer_text
from tests.fakes.recordings import completion_id as recorded_completion_id
from usage.models import ApiUsageLog, Budget, BudgetReservation, ModelPrice
from usage.pricing import forget_prices

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
MILLION = D(1_000_000)
PLACES = D("0.00000001")
# Distinct test prices (USD per million tokens), so every kind of token is priced apart.
TEST_PRICES = {"input_per_mtok": D("1.25"), "output_per_mtok": D("10"), "cached_input_per_mtok": D("0.125"),
               "reasoning_per_mtok": D("12")}

SUCCESS, EITHER = "success", "success-or-error"
HTTP_STATUS = {"PROVIDER_ERROR": 502, "RATE_LIMITED": 429}
ROW_STATUS = {"PROVIDER_ERROR": "error", "RATE_LIMITED": "rate_limited"}


@dataclass(frozen=True)
class Expected:
    """One row of the recordings README's table."""

    route: str  # the provider: openai (any OpenAI-compatible base URL), openrouter, gemini
    model: str  # the model the recording was made with
    prompt: int | None
    completion: int | None
    total: int | None
    cached: int | None
    reasoning: int | None
    finish: str | None
    billed: Decimal | None  # OpenRouter's usage.cost
    calls: int
    outcome: str  # SUCCESS, EITHER, or the error code

    @property
    def dialect(self) -> str:
        return "gemini" if self.route == "gemini" else "openai"

    @property
    def usage(self) -> dict[str, int | None]:
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion, "total_tokens": self.total,
                "cached_tokens": self.cached, "reasoning_tokens": self.reasoning}


def _ok(route, model, p, c, t, cached, r, finish, billed=None) -> Expected:
    return Expected(route, model, p, c, t, cached, r, finish, None if billed is None else D(billed), 1, SUCCESS)


def _err(route, model, code, calls) -> Expected:
    return Expected(route, model, 0, 0, 0, 0, 0, None, None, calls, code)


# recording: route, model, prompt / completion / total / cached / reasoning, finish, billed (README table)
TABLE: dict[str, Expected] = {
    "openai-gpt41nano-text": _ok("openai", "gpt-4.1-nano", 16, 300, 316, 0, 0, "stop"),
    "azure-gpt5nano-router": _ok("openai", "gpt-5-nano", 15, 78, 93, 0, 64, "stop"),
    "xai-grok-reasoning": _ok("openai", "grok-3-mini", 12, 342, 354, 11, 340, "stop"),
    "cerebras-cached-reasoning": _ok("openai", "zai-glm-4.7", 433, 122, 555, 256, 108, "tool_calls"),
    "deepseek-reasoning": _ok("openai", "deepseek-reasoner", 18, 219, 237, 0, 205, "stop"),
    "deepseek-length": _ok("openai", "deepseek-chat", 13, 400, 413, 0, 0, "length"),
    "groq-reasoning": _ok("openai", "qwen/qwen3-32b", 17, 1107, 1124, 0, 963, "stop"),
    "openai-400-legacy-param": _err("openai", "o4-mini", "PROVIDER_ERROR", 1),
    "or-grok4-cached": _ok("openrouter", "x-ai/grok-4", 687, 187, 874, 679, 118, "stop", "0.00333825"),
    "or-o3": _ok("openrouter", "openai/o3", 9, 104, 113, 0, 0, "stop", "0.00085"),
    "or-claude-reasoning": _ok("openrouter", "anthropic/claude-sonnet-4.5", 43, 36, 79, 0, 13, "stop", "0.000669"),
    # Success or error both acceptable; only prompt / completion / total and the billed cost are checked.
    "or-minimax-error-chunk": Expected("openrouter", "minimax/minimax-m2:free", 43, 10, 53, None, None, None,
                                       D("0"), 1, EITHER),
    "or-429": _err("openrouter", "google/gemini-2.0-flash-exp:free", "RATE_LIMITED", 4),
    "gm25flash-maxtokens": _ok("gemini", "gemini-2.5-flash", 7, 198, 205, 0, 45, "length"),
    "gm25flash-sysinstr": _ok("gemini", "gemini-2.5-flash", 20, 513, 533, 0, 260, "stop"),
    "gm3pro-thoughtsig": _ok("gemini", "gemini-3-pro-preview", 9, 208, 217, 0, 185, "stop"),
    "gm25pro-thought-parts": _ok("gemini", "gemini-2.5-pro", 34, 1256, 1290, 0, 787, "stop"),
    "gm25flash-live-usage": _ok("gemini", "gemini-2.5-flash", 18, 115, 133, 0, 35, "stop"),
    "gm25flash-mcp-cached": _ok("gemini", "gemini-2.5-flash", 3778, 523, 4301, 901, 91, "stop"),
    "gm25flash-thinking-only": _ok("gemini", "gemini-2.5-flash", 7, 19, 26, 0, 19, "length"),
    "gm-429-retryinfo": _err("gemini", "gemini-2.5-flash", "RATE_LIMITED", 4),
    "gm-404-notfound": _err("gemini", "custom-gemini-2.0-flash", "PROVIDER_ERROR", 1),
}
assert len(TABLE) == 22 and {n: e.dialect for n, e in TABLE.items()} == RECORDINGS


# --- what the recording itself says -------------------------------------------------------------


def answer_text(name: str, exp: Expected) -> str:
    return recorded_answer_text(name, exp.dialect)


def completion_id(name: str, exp: Expected) -> str:
    return recorded_completion_id(name, exp.dialect)


def expected_cost(pricing: dict[str, Any], exp: Expected) -> Decimal:
    """The listed price (decimal strings per million tokens) applied by hand: uncached prompt at
    input, cached at cached input, (completion - reasoning) at output, reasoning at reasoning."""
    inp, out = D(pricing["input_per_mtok"]), D(pricing["output_per_mtok"])
    cached_in = inp if pricing.get("cached_input_per_mtok") is None else D(pricing["cached_input_per_mtok"])
    reasoning_out = out if pricing.get("reasoning_per_mtok") is None else D(pricing["reasoning_per_mtok"])
    total = ((exp.prompt - exp.cached) * inp + exp.cached * cached_in
             + (exp.completion - exp.reasoning) * out + exp.reasoning * reasoning_out)
    return (total / MILLION).quantize(PLACES, rounding=ROUND_HALF_UP)


def money(value: Decimal) -> str:
    return f"{value.quantize(PLACES):f}"


# --- checks that report every mismatch at once --------------------------------------------------


class Checks:
    def __init__(self, where: str) -> None:
        self.where = where
        self.failures: list[str] = []

    def eq(self, label: str, got: Any, want: Any) -> None:
        if got != want:
            self.failures.append(f"{label}: expected {want!r}, got {got!r}")

    def true(self, label: str, ok: bool, detail: Any = None) -> None:
        if not ok:
            self.failures.append(label if detail is None else f"{label}: got {detail!r}")

    def done(self) -> None:
        assert not self.failures, f"{self.where}: {len(self.failures)} mismatch(es)\n  " + "\n  ".join(self.failures)


MONEY_KEYS = {"cost", "estimated", "actual", "cost_used", "cost_limit", "estimated_cost", "actual_cost",
              "total_estimated_cost", "total_actual_cost", "total_cost", "cost_estimate"}
PLAIN_MONEY = re.compile(r"-?\d+(\.\d+)?")


def money_strings(obj: Any, path: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in MONEY_KEYS and isinstance(value, str):
                found.append((f"{path}.{key}", value))
            found += money_strings(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += money_strings(value, f"{path}[{index}]")
    return found


def check_money_strings(checks: Checks, label: str, payload: Any) -> None:
    for where, value in money_strings(payload):
        checks.true(f"{label}{where} is not plain digits", PLAIN_MONEY.fullmatch(value) is not None, value)


def as_money(value: Any) -> Any:
    """A payload's money string as Decimal when it is plain digits; else what it was (to show)."""
    if isinstance(value, str) and PLAIN_MONEY.fullmatch(value):
        return D(value)
    return value


# --- the database side ----------------------------------------------------------------------------


@database_sync_to_async
def token_for(user) -> str:
    return AuthToken.objects.create(user)[1]


@database_sync_to_async
def set_price(model: str, route: str) -> None:
    # Ours is the only price of this model (a seeded, later-dated row would otherwise win).
    ModelPrice.objects.filter(model_id=model).delete()
    ModelPrice.objects.create(provider=route, model_id=model, display_name=f"{model} (recorded)",
                              context_window=128_000, effective_date=date(2020, 1, 1), is_active=True,
                              currency="USD", **TEST_PRICES)
    forget_prices()


@database_sync_to_async
def stored(user) -> dict[str, Any]:
    return {
        "rows": list(ApiUsageLog.objects.filter(user=user).order_by("created_at")),
        "assistants": list(Message.objects.filter(owner=user, role=Message.Role.ASSISTANT)
                           .select_related("user_message")),
        "conversations": list(Conversation.objects.filter(owner=user)),
        "budget": Budget.objects.get(user=user),
        "holds": BudgetReservation.objects.filter(user=user, state=BudgetReservation.State.HELD).count(),
    }


async def listed_pricing(token: str, model: str) -> dict[str, Any]:
    response = await AsyncClient().get("/api/v1/models", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    [entry] = [m for m in response.json()["models"] if m["id"] == model]
    assert entry["available"] is True and entry["pricing"] is not None, entry
    return entry["pricing"]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(params=list(TABLE), ids=list(TABLE))
def recording(request, settings):
    name = request.param
    exp = TABLE[name]
    with RecordedProvider(name, exp.dialect) as fake:
        _point(settings, exp.route, fake.base_url)
        yield name, exp, fake


# --- the doors ----------------------------------------------------------------------------------


async def over_websocket(token: str, model: str) -> list[dict]:
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=[(b"origin", b"http://testserver")])
    connected, _ = await ws.connect()
    assert connected
    try:
        await ws.send_json_to({"type": "send_message", "message": "Hello", "model": model})
        events: list[dict] = []
        while not events or events[-1]["type"] not in ("message_complete", "error"):
            events.append(await ws.receive_json_from(timeout=20))
        # A stream ends with exactly one message_complete or one error: nothing follows it.
        assert await ws.receive_nothing(timeout=0.1), "an event followed the end of the stream"
        return events
    finally:
        await ws.disconnect()


async def over_send(token: str, model: str):
    return await AsyncClient().post("/api/v1/chat/send", {"message": "Hello", "model": model},
                                    content_type="application/json", headers={"authorization": f"Bearer {token}"})


# --- assertions ---------------------------------------------------------------------------------


def check_stored_success(c: Checks, db: dict, exp: Expected, fake, answer: str, cid: str, cost: Decimal) -> None:
    c.eq("provider calls", fake.calls, exp.calls)
    c.eq("usage rows", len(db["rows"]), 1)
    if not db["rows"]:
        return
    row = db["rows"][0]
    c.eq("row.status", row.status, "success")
    c.eq("row.usage_source", row.usage_source, "provider")
    c.eq("row.provider", row.provider, exp.route)
    c.eq("row.model_name", row.model_name, exp.model)
    c.eq("row figures", {k: getattr(row, k) for k in exp.usage}, exp.usage)
    c.eq("row prompt + completion", row.prompt_tokens + row.completion_tokens, row.total_tokens)
    c.eq("row.cost_estimate", row.cost_estimate, cost)
    c.eq("row.actual_cost", row.actual_cost, exp.billed)
    c.eq("row.metadata.finish_reason", (row.metadata or {}).get("finish_reason"), exp.finish)

    c.eq("assistant messages", len(db["assistants"]), 1)
    if db["assistants"]:
        answer_row = db["assistants"][0]
        c.eq("assistant.content", answer_row.content, answer)
        c.eq("assistant.status", answer_row.status, Message.Status.COMPLETE)
        c.eq("assistant figures",
             {"completion_tokens": answer_row.completion_tokens, "total_tokens": answer_row.total_tokens,
              "reasoning_tokens": answer_row.reasoning_tokens, "cached_tokens": answer_row.cached_tokens},
             {"completion_tokens": exp.completion, "total_tokens": exp.total,
              "reasoning_tokens": exp.reasoning, "cached_tokens": exp.cached})
        c.eq("assistant.cost", answer_row.cost, cost)
        c.eq("assistant.actual_cost", answer_row.actual_cost, exp.billed)
        c.eq("assistant.completion_id", answer_row.completion_id, cid)
        c.eq("user_message.prompt_tokens", answer_row.user_message.prompt_tokens if answer_row.user_message else None,
             exp.prompt)

    c.eq("conversations", len(db["conversations"]), 1)
    if db["conversations"]:
        conv = db["conversations"][0]
        c.eq("conversation totals",
             {"input_tokens": conv.input_tokens, "output_tokens": conv.output_tokens,
              "total_tokens": conv.total_tokens, "reasoning_tokens": conv.reasoning_tokens,
              "cached_tokens": conv.cached_tokens, "estimated_cost": conv.estimated_cost,
              "actual_cost": conv.actual_cost},
             {"input_tokens": exp.prompt, "output_tokens": exp.completion, "total_tokens": exp.total,
              "reasoning_tokens": exp.reasoning, "cached_tokens": exp.cached, "estimated_cost": cost,
              "actual_cost": exp.billed})
    c.eq("budget.tokens_used", db["budget"].tokens_used, exp.total)
    c.eq("budget.tokens_held", db["budget"].tokens_held, 0)
    c.eq("held reservations", db["holds"], 0)


def check_stored_error(c: Checks, db: dict, exp: Expected, fake) -> None:
    c.eq("provider calls", fake.calls, exp.calls)
    c.eq("usage rows", len(db["rows"]), 1)
    if db["rows"]:
        row = db["rows"][0]
        c.eq("row.status", row.status, ROW_STATUS[exp.outcome])
        c.eq("row.usage_source", row.usage_source, "none")
        c.eq("row.provider", row.provider, exp.route)
        c.eq("row.model_name", row.model_name, exp.model)
        c.eq("row figures", {k: getattr(row, k) for k in exp.usage}, exp.usage)
        c.eq("row.cost_estimate", row.cost_estimate, D("0"))
        c.eq("row.actual_cost", row.actual_cost, None)
        c.true("row.metadata.estimated_prompt_tokens present", "estimated_prompt_tokens" in (row.metadata or {}),
               row.metadata)
        c.eq("row.metadata.retries", (row.metadata or {}).get("retries"), exp.calls - 1)
    if db["conversations"]:
        conv = db["conversations"][0]
        c.eq("conversation totals", conv.usage_dict() | {"actual_cost": conv.actual_cost},
             {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "reasoning_tokens": 0, "cached_tokens": 0,
              "cost": "0.00000000", "message_count": 2, "actual_cost": None})
    c.eq("budget.tokens_used", db["budget"].tokens_used, 0)
    c.eq("budget.tokens_held", db["budget"].tokens_held, 0)
    c.eq("held reservations", db["holds"], 0)


def check_stored_minimax(c: Checks, db: dict, exp: Expected, fake) -> None:
    c.eq("provider calls", fake.calls, exp.calls)
    c.eq("usage rows", len(db["rows"]), 1)
    if db["rows"]:
        row = db["rows"][0]
        c.eq("row billed figures",
             {"prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
              "total_tokens": row.total_tokens, "actual_cost": row.actual_cost, "usage_source": row.usage_source},
             {"prompt_tokens": exp.prompt, "completion_tokens": exp.completion, "total_tokens": exp.total,
              "actual_cost": exp.billed, "usage_source": "provider"})
    c.eq("budget.tokens_used", db["budget"].tokens_used, exp.total)
    c.eq("held reservations", db["holds"], 0)


def expected_conversation_usage(exp: Expected, cost: Decimal) -> dict[str, Any]:
    return {"input_tokens": exp.prompt, "output_tokens": exp.completion, "total_tokens": exp.total,
            "reasoning_tokens": exp.reasoning, "cached_tokens": exp.cached, "cost": money(cost), "message_count": 2}


def check_cost_payload(c: Checks, label: str, cost_payload: Any, exp: Expected, cost: Decimal) -> None:
    if not isinstance(cost_payload, dict):
        c.failures.append(f"{label}: expected a cost object, got {cost_payload!r}")
        return
    c.eq(f"{label}.estimated", cost_payload.get("estimated"), money(cost))
    c.eq(f"{label}.actual", as_money(cost_payload.get("actual")), exp.billed)
    c.eq(f"{label}.currency", cost_payload.get("currency"), "USD")


def check_message_payload(c: Checks, label: str, msg: Any, exp: Expected, answer: str, cid: str,
                          cost: Decimal) -> None:
    msg = msg or {}
    c.eq(f"{label} figures",
         {k: msg.get(k) for k in ("content", "completion_tokens", "total_tokens", "reasoning_tokens",
                                  "cached_tokens", "completion_id")} | {"cost": as_money(msg.get("cost"))},
         {"content": answer, "completion_tokens": exp.completion, "total_tokens": exp.total,
          "reasoning_tokens": exp.reasoning, "cached_tokens": exp.cached, "completion_id": cid, "cost": cost})


# --- the tests ----------------------------------------------------------------------------------


async def _prepare(owner, exp: Expected) -> tuple[str, Decimal | None]:
    await set_price(exp.model, exp.route)
    token = await token_for(owner)
    pricing = await listed_pricing(token, exp.model)
    cost = expected_cost(pricing, exp) if exp.outcome == SUCCESS else None
    return token, cost


async def test_websocket_door(owner, recording):
    name, exp, fake = recording
    token, cost = await _prepare(owner, exp)
    events = await over_websocket(token, exp.model)
    db = await stored(owner)
    c = Checks(f"{name} over the WebSocket")
    names = [e["type"] for e in events]
    check_money_strings(c, "events", events)
    last = events[-1]

    if exp.outcome == SUCCESS:
        answer, cid = answer_text(name, exp), completion_id(name, exp)
        c.eq("events start", names[:2], ["message_saved", "stream_start"])
        c.eq("events end", names[-2:], ["stream_end", "message_complete"])
        c.true("only stream_chunk between stream_start and stream_end",
               all(n == "stream_chunk" for n in names[2:-2]), names[2:-2] if len(names) > 4 else names)
        if last["type"] == "error":
            c.failures.append(f"stream ended in error {last.get('code')}: {last.get('message')}")
        c.eq("stream_start.model", events[1].get("model") if len(events) > 1 else None, exp.model)
        c.eq("streamed text", "".join(e.get("chunk", "") for e in events if e["type"] == "stream_chunk"), answer)
        ends = [e for e in events if e["type"] == "stream_end"]
        c.eq("stream_end.usage", ends[0].get("usage") if ends else None, exp.usage)
        if last["type"] == "message_complete":
            c.eq("message_complete.usage", last.get("usage"), exp.usage)
            check_cost_payload(c, "message_complete.cost", last.get("cost"), exp, cost)
            c.eq("message_complete.conversation_usage", last.get("conversation_usage"),
                 expected_conversation_usage(exp, cost))
            c.eq("message_complete.budget.total_tokens_used", (last.get("budget") or {}).get("total_tokens_used"),
                 exp.total)
            c.eq("message_complete.user_message.prompt_tokens", (last.get("user_message") or {}).get("prompt_tokens"),
                 exp.prompt)
            check_message_payload(c, "message_complete.message", last.get("message"), exp, answer, cid, cost)
        check_stored_success(c, db, exp, fake, answer, cid, cost)
    elif exp.outcome == EITHER:
        c.true("ends in message_complete or error", last["type"] in ("message_complete", "error"), names)
        c.eq("ending events (message_complete + error)", names.count("error") + names.count("message_complete"), 1)
        check_stored_minimax(c, db, exp, fake)
    else:
        c.eq("events", names, ["message_saved", "stream_start", "error"])
        c.eq("error.code", last.get("code"), exp.outcome)
        check_stored_error(c, db, exp, fake)
    c.done()


async def test_send_door(owner, recording):
    name, exp, fake = recording
    token, cost = await _prepare(owner, exp)
    response = await over_send(token, exp.model)
    db = await stored(owner)
    c = Checks(f"{name} through /send")
    try:
        body = response.json()
    except ValueError:
        body = None
        c.failures.append(f"/send answered no JSON: {response.status_code} {response.content[:200]!r}")
    check_money_strings(c, "response", body)

    if exp.outcome == SUCCESS:
        answer, cid = answer_text(name, exp), completion_id(name, exp)
        c.eq("HTTP status", response.status_code, 200)
        data = (body or {}).get("data") or {}
        if response.status_code != 200:
            c.failures.append(f"error body: {body!r}")
        c.eq("data.usage", data.get("usage"), exp.usage)
        check_cost_payload(c, "data.cost", data.get("cost"), exp, cost)
        c.eq("data.id", data.get("id"), cid)
        c.eq("data.response", data.get("response"), answer)
        c.eq("data.model", data.get("model"), exp.model)
        if "conversation_usage" in data:
            c.eq("data.conversation_usage", data["conversation_usage"], expected_conversation_usage(exp, cost))
        if "budget" in data:
            c.eq("data.budget.total_tokens_used", (data["budget"] or {}).get("total_tokens_used"), exp.total)
        check_stored_success(c, db, exp, fake, answer, cid, cost)
    elif exp.outcome == EITHER:
        if response.status_code != 200:
            c.true("error body has a code", isinstance(((body or {}).get("error") or {}).get("code"), str), body)
        check_stored_minimax(c, db, exp, fake)
    else:
        c.eq("HTTP status", response.status_code, HTTP_STATUS[exp.outcome])
        error = (body or {}).get("error")
        c.true("JSON error body {'error': {...}}", isinstance(error, dict), body)
        error = error if isinstance(error, dict) else {}
        c.eq("error.code", error.get("code"), exp.outcome)
        c.true("error.message is text", isinstance(error.get("message"), str) and bool(error.get("message")), error)
        check_stored_error(c, db, exp, fake)
    c.done()
