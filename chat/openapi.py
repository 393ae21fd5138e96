"""The OpenAPI schema beyond what drf-spectacular sees: the contract's error answers on every
operation, the rule that no string may hold NUL, the exchange doors (plain async views) and the
sync push body (pydantic models).

The hooks are named in settings.SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"].
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from pydantic.json_schema import GenerateJsonSchema

from chat.exchange.body import SendBody
from chatlima.text import NO_NUL_PATTERN

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": {}},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
COMMON_ERRORS = {
    "400": "INVALID_MESSAGE: a bad field, parameter or body (NUL characters, JSON nested deeper than 64 levels)",
    "401": "UNAUTHENTICATED: no or bad credentials",
    "403": "PERMISSION_DENIED: a session request without its CSRF token, or staff only",
    "429": "RATE_LIMITED: our own throttle",
    "503": "SERVICE_UNAVAILABLE: no database connection came free in time (chatlima/db.py; Retry-After)",
}
BODY_ERRORS = {"413": "PAYLOAD_TOO_LARGE: a body over CHATLIMA_MAX_BODY_BYTES"}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _forbid_nul(schema, seen: set[int]) -> None:
    """Every string the API takes may not hold NUL (no column can store one; DRF's CharField and the
    doors refuse it): say so with a pattern wherever a string has no stricter rule of its own."""
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
        schema["pattern"] = NO_NUL_PATTERN
    for key in ("properties", "patternProperties"):
        for child in (schema.get(key) or {}).values():
            _forbid_nul(child, seen)
    for key in ("items", "additionalProperties", "not"):
        _forbid_nul(schema.get(key), seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key) or []:
            _forbid_nul(child, seen)


def _request_schemas(result) -> list:
    """The schemas of what clients send: request bodies (COMPONENT_SPLIT_REQUEST names them
    `...Request`, and SendMessage) and every parameter."""
    schemas = result.get("components", {}).get("schemas", {})
    found = [schema for name, schema in schemas.items() if name.endswith("Request") or name == "SendMessage"]
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in HTTP_METHODS:
                found += [parameter.get("schema") for parameter in operation.get("parameters", [])]
    return found


def add_error_responses(result, generator, request, public):
    """drf-spectacular hook: every operation may answer with the contract's error body, and no
    string it takes may hold NUL.

    Any DRF view can refuse a parameter or body (400), credentials (401), a session request
    without its CSRF token (403) or a burst (429), and any request can find the database pool busy
    (503); an operation with a body can meet the body limit
    (413, chatlima.middleware); a path naming an object can answer 404. Views rarely list these.
    """
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorBody", ERROR_SCHEMA)
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            errors = {**COMMON_ERRORS, **(BODY_ERRORS if "requestBody" in operation else {})}
            for code, description in errors.items():
                responses.setdefault(code, {"content": ref, "description": description})
            if "{" in path:
                responses.setdefault("404", {"content": ref, "description": "Not found, or someone else's"})
    seen: set[int] = set()
    for schema in _request_schemas(result):
        _forbid_nul(schema, seen)
    return result


USAGE_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "integer"} for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")},
    "required": ["prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"],
}
MONEY = {"type": "string", "nullable": True, "description": "A decimal string, 8 places."}
COST_SCHEMA = {
    "type": "object",
    "properties": {"estimated": MONEY, "actual": MONEY, "currency": {"type": "string"}},
    "required": ["estimated", "actual", "currency"],
}
MESSAGE_REF = {"$ref": "#/components/schemas/Message"}
CONVERSATION_USAGE_REF = {"$ref": "#/components/schemas/ConversationUsage"}
BUDGET_SCHEMA = {"type": "object", "additionalProperties": {}, "description": "As GET /api/v1/budget."}
USER_MESSAGE_FIGURES = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "prompt_tokens": {"type": "integer", "nullable": True}},
    "required": ["id", "prompt_tokens"],
}
SEND_RESPONSE = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "response": {"type": "string"},
                "usage": USAGE_SCHEMA,
                "cost": COST_SCHEMA,
                "timestamp": {"type": "string", "format": "date-time"},
                "elapsed_time": {"type": "integer", "nullable": True},
                "contentType": {"type": "string"},
                "id": {"type": "string", "description": "The provider's completion id."},
                "request_id": {"type": "string", "description": "The user message's id."},
                "message_id": {"type": "string", "nullable": True, "description": "The assistant message's id."},
                "conversation_id": {"type": "string", "nullable": True},
                "model": {"type": "string", "nullable": True},
                "user_message": USER_MESSAGE_FIGURES,
                "conversation_usage": CONVERSATION_USAGE_REF,
                "budget": BUDGET_SCHEMA,
            },
            "required": ["response", "usage", "cost", "timestamp", "request_id", "message_id", "conversation_id"],
        },
        "timestamp": {"type": "string", "format": "date-time"},
    },
    "required": ["data", "timestamp"],
}


def _event(name: str, properties: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": [name]}, **properties},
        "required": ["type", *required],
    }


ID = {"type": "string"}
# API.md "Streaming events": the JSON of each event, the same over SSE and the WebSocket.
STREAM_EVENTS = {
    "message_saved": _event("message_saved", {"request_id": ID, "conversation_id": ID, "message": MESSAGE_REF},
                            ["request_id", "conversation_id", "message"]),
    "stream_start": _event("stream_start", {
        "request_id": ID, "conversation_id": ID, "model": {"type": "string"},
        "estimated_prompt_tokens": {"type": "integer"}, "conversation_usage": CONVERSATION_USAGE_REF,
        "message_id": ID, "max_tokens": {"type": "integer"}, "max_tokens_clamped": {"type": "boolean"},
        "replayed": {"type": "boolean"},
    }, ["request_id", "conversation_id", "model", "estimated_prompt_tokens", "conversation_usage"]),
    "stream_chunk": _event("stream_chunk", {
        "request_id": ID, "chunk": {"type": "string"}, "estimated_completion_tokens": {"type": "integer"},
    }, ["request_id", "chunk", "estimated_completion_tokens"]),
    "stream_end": _event("stream_end", {"request_id": ID, "usage": USAGE_SCHEMA}, ["request_id", "usage"]),
    "message_complete": _event("message_complete", {
        "request_id": ID, "user_message": USER_MESSAGE_FIGURES,
        "message": {"allOf": [MESSAGE_REF], "nullable": True, "description": "With content_html."},
        "usage": USAGE_SCHEMA, "cost": COST_SCHEMA, "conversation_usage": CONVERSATION_USAGE_REF,
        "budget": BUDGET_SCHEMA, "replayed": {"type": "boolean"},
    }, ["request_id", "user_message", "message", "usage", "cost", "conversation_usage", "budget"]),
    "error": _event("error", {
        "request_id": ID, "code": {"type": "string"}, "message": {"type": "string"},
        "details": {"type": "object", "additionalProperties": {}},
    }, ["code", "message"]),
}
STREAM_EVENT = {"oneOf": [{"$ref": f"#/components/schemas/StreamEvent_{name}"} for name in STREAM_EVENTS]}
# One server-sent event; Open API before 3.2 has the media type's schema describe each event.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": list(STREAM_EVENTS)},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/StreamEvent"}},
    },
    "required": ["event", "data"],
}
EXCHANGE_ERRORS = {
    "400": "INVALID_MESSAGE or MODEL_UNAVAILABLE",
    "401": "UNAUTHENTICATED",
    "403": "TOKEN_LIMIT_EXCEEDED (or a failed CSRF check for a session)",
    "404": "CONVERSATION_NOT_FOUND",
    "413": "PAYLOAD_TOO_LARGE",
    "429": "RATE_LIMITED",
    "502": "PROVIDER_ERROR",
    "504": "TIMEOUT",
}


def _exchange_operation(operation_id: str, summary: str, ok: dict) -> dict:
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["chat"],
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendMessage"}}}},
            "responses": {"200": ok, **{code: {"description": text, "content": ref} for code, text in EXCHANGE_ERRORS.items()}},
        }
    }


def describe_exchange_doors(result, generator, request, public):
    """drf-spectacular hook: the exchange doors are plain async views the generator cannot see.

    Adds /api/v1/chat/send and /api/v1/chat/stream (API.md "Sending a message") unless a
    view already describes them. The WebSocket /ws/chat/ carries the same events.
    """
    paths = result.setdefault("paths", {})
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ERROR_SCHEMA)
    if "SendMessage" not in schemas:
        send = SendBody.model_json_schema(ref_template="#/components/schemas/{model}", schema_generator=OpenApi30JsonSchema)
        schemas.update(send.pop("$defs", {}))
        send["properties"]["messages"] = send["properties"].pop("messages")  # last, as the contract lists it
        schemas["SendMessage"] = send
    schemas.setdefault("SendResult", SEND_RESPONSE)
    schemas.setdefault("StreamEvent", STREAM_EVENT)
    for name, event in STREAM_EVENTS.items():
        schemas.setdefault(f"StreamEvent_{name}", event)
    paths.setdefault("/api/v1/chat/send", _exchange_operation(
        "chat_send", "Send a message and wait for the whole answer.",
        {"description": "The answer with its usage and cost.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendResult"}}}},
    ))
    paths.setdefault("/api/v1/chat/stream", _exchange_operation(
        "chat_stream", "Send a message and stream the answer as server-sent events.",
        {
            "description": "`event: <type>\\ndata: <json>\\n\\n` frames: message_saved, stream_start, stream_chunk, "
            "stream_end, then exactly one message_complete or error. Errors before the stream starts are plain JSON. "
            "The schema describes one event; its `data` is a StreamEvent.",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
    ))
    return result


class OpenApi30JsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema in OpenAPI 3.0's dialect: `nullable` rather than a null type, and no
    titles or defaults (the descriptions say what an absent field means)."""

    def nullable_schema(self, schema):
        inner = self.generate_inner(schema["schema"])
        return {"allOf": [inner], "nullable": True} if "$ref" in inner else {**inner, "nullable": True}

    def default_schema(self, schema):
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema) -> bool:
        return False

    def model_schema(self, schema):
        json_schema = super().model_schema(schema)
        json_schema.pop("title", None)
        return json_schema


class SyncPushScheme(OpenApiSerializerExtension):
    """The push body in the schema, straight from the models that validate it (chat.sync.schema):
    SyncPushRequest, SyncConversationRequest and SyncMessageRequest."""

    target_class = "chat.sync.schema.SyncPush"
    priority = 1  # over drf_spectacular.contrib.pydantic, which names parts without "Request"

    def get_name(self, auto_schema, direction):
        return "SyncPush"

    def map_serializer(self, auto_schema, direction):
        schema = self.target.model_json_schema(
            ref_template="#/components/schemas/{model}Request", schema_generator=OpenApi30JsonSchema, mode="validation"
        )
        for name, part in schema.pop("$defs", {}).items():
            component = ResolvedComponent(name=f"{name}Request", type=ResolvedComponent.SCHEMA, object=f"{name}Request", schema=part)
            auto_schema.registry.register_on_missing(component)
        return schema
