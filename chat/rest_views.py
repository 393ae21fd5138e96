"""Conversations CRUD and mobile sync over REST: thin doors onto chat.conversations and chat.sync."""

from __future__ import annotations

from django.utils.functional import lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from chat.conversations import create_conversation, delete_conversation, update_conversation
from chat.ids import ID_SCHEMA_PATTERN, is_valid_id
from chat.models import Conversation
from chat.payloads import conversation_payload, message_payload
from chat.providers import usable_provider
from chat.serializers import (
    ConversationCreateSerializer,
    ConversationDetailSerializer,
    ConversationPageSerializer,
    ConversationSerializer,
    ConversationWriteSerializer,
    ErrorSerializer,
    MessagePageSerializer,
    SyncPullResponseSerializer,
    SyncPushResponseSerializer,
)
from chat.sync.pull import PULL_DEFAULT_LIMIT, PULL_MAX_LIMIT, pull
from chat.sync.push import push
from chat.sync.schema import SyncPush, push_limits
from chatlima.errors import ClientError
from chatlima.params import int_param, int_schema, query_param

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="INVALID_MESSAGE or MODEL_UNAVAILABLE"),
    401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
    429: OpenApiResponse(ErrorSerializer, description="RATE_LIMITED"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="CONVERSATION_NOT_FOUND")}
PUBLIC_ID = OpenApiParameter(
    "public_id", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=ID_SCHEMA_PATTERN,
    description="The conversation's id; one that cannot be an id is as missing as any other.",
)
CURSOR = OpenApiParameter(
    "cursor", {"type": "string", "minLength": 1},
    description="The `next` link's cursor, as the server issued it; anything else is a 400.",
)


def _own_conversation(request: Request, public_id: str) -> Conversation:
    """The caller's live conversation; anyone else's is indistinguishable from a missing one."""
    conv = None
    if is_valid_id(public_id):
        conv = Conversation.objects.for_user(request.user).filter(public_id=public_id).first()
    if conv is None:
        raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.")
    return conv


def _page(paginator: CursorPagination, queryset, request: Request, view) -> list:
    """One page of `queryset`; a `limit` outside the documented range or a foreign cursor is a 400."""
    int_param(request, "limit", None, 1, paginator.max_page_size)
    query_param(request, "cursor")
    try:
        return paginator.paginate_queryset(queryset, request, view=view)
    except NotFound as exc:  # DRF's answer to a malformed cursor
        raise ClientError("INVALID_MESSAGE", "Invalid cursor.", {"cursor": "invalid"}) from exc


def _check_model(model: str | None) -> None:
    """A conversation's model must be one a send would take (chat.providers.usable_provider); blank keeps the default."""
    if model:
        usable_provider(model)


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ClientError("INVALID_MESSAGE", "Invalid request.", serializer.errors)
    return serializer.validated_data


class ConversationPagination(CursorPagination):
    ordering = ("-updated_at", "-pk")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})


class ConversationListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="conversations_list",
        parameters=[
            CURSOR,
            OpenApiParameter("limit", int_schema(1, ConversationPagination.max_page_size), description="Page size."),
        ],
        responses={200: ConversationPageSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        paginator = ConversationPagination()
        page = _page(paginator, Conversation.objects.for_user(request.user), request, self)
        return paginator.get_paginated_response([conversation_payload(c) for c in page])

    @extend_schema(
        operation_id="conversations_create",
        request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, 200: ConversationSerializer, **ERRORS},
        description="Creates a conversation, with the client's `id` when given. Posting an id you already "
        "have returns that conversation with 200, so a retried create is safe.",
    )
    def post(self, request: Request) -> Response:
        data = _validated(ConversationCreateSerializer, request.data)
        _check_model(data.get("model"))
        conv, created = create_conversation(
            request.user,
            public_id=data.get("id"),
            title=data.get("title", ""),
            model=data.get("model", ""),
            system_prompt=data.get("system_prompt", ""),
            temperature=data.get("temperature"),
            max_tokens=data.get("max_tokens"),
        )
        return Response(conversation_payload(conv), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ConversationDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="conversations_retrieve", parameters=[PUBLIC_ID],
        responses={200: ConversationDetailSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, public_id: str) -> Response:
        conv = _own_conversation(request, public_id)
        data = conversation_payload(conv)
        data["messages"] = [message_payload(m) for m in conv.messages.select_related("user_message", "replaces")]
        return Response(data)

    @extend_schema(
        operation_id="conversations_partial_update",
        parameters=[PUBLIC_ID],
        request=ConversationWriteSerializer,
        responses={200: ConversationSerializer, **ERRORS, **NOT_FOUND},
    )
    def patch(self, request: Request, public_id: str) -> Response:
        conv = _own_conversation(request, public_id)
        data = _validated(ConversationWriteSerializer, request.data)
        _check_model(data.get("model"))
        conv = update_conversation(conv, dict(data))
        return Response(conversation_payload(conv))

    @extend_schema(
        operation_id="conversations_destroy",
        parameters=[PUBLIC_ID],
        responses={204: OpenApiResponse(description="Deleted (a tombstone that sync reports)."), **ERRORS, **NOT_FOUND},
    )
    def delete(self, request: Request, public_id: str) -> Response:
        delete_conversation(_own_conversation(request, public_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessagePagination(CursorPagination):
    ordering = ("timestamp", "pk")
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 500

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})


class ConversationMessagesView(APIView):
    @extend_schema(
        operation_id="conversations_messages",
        parameters=[
            PUBLIC_ID, CURSOR,
            OpenApiParameter("limit", int_schema(1, MessagePagination.max_page_size), description="Page size."),
        ],
        responses={200: MessagePageSerializer, **ERRORS, **NOT_FOUND},
        description="The conversation's messages, oldest first, a page at a time (for long conversations).",
    )
    def get(self, request: Request, public_id: str) -> Response:
        conv = _own_conversation(request, public_id)
        paginator = MessagePagination()
        page = _page(paginator, conv.messages.select_related("user_message", "replaces"), request, self)
        return paginator.get_paginated_response([message_payload(m) for m in page])


def _push_description() -> str:
    """Read when the schema is generated, so it states the limits the server applies."""
    limits = push_limits()
    return (
        f"All or nothing and idempotent. At most {limits.conversations} conversations, {limits.messages} messages "
        f"and {limits.deleted} deleted ids per body. Derived fields are ignored; pushed token figures never count "
        "against a budget."
    )


class SyncView(APIView):
    parser_classes = [JSONParser]
    throttle_classes = [UserRateThrottle, AnonRateThrottle, ScopedRateThrottle]
    throttle_scope = "sync"

    @extend_schema(
        operation_id="sync_pull",
        parameters=[
            OpenApiParameter("since", {"type": "string", "minLength": 1},
                             description="The cursor of the last pull or push, as the server issued it; absent: everything."),
            OpenApiParameter("limit", int_schema(1, PULL_MAX_LIMIT), description="Conversations per page."),
            OpenApiParameter("attachments", int_schema(0, 1),
                             description="1: each conversation also lists its `attachments` (without their text)."),
        ],
        responses={200: SyncPullResponseSerializer, **ERRORS},
        description="Conversations changed after `since`, with every message and all token figures. "
        "Follow `cursor` while `has_more` is true.",
    )
    def get(self, request: Request) -> Response:
        limit = int_param(request, "limit", PULL_DEFAULT_LIMIT, 1, PULL_MAX_LIMIT)
        with_attachments = int_param(request, "attachments", 0, 0, 1) == 1
        return Response(pull(request.user, query_param(request, "since"), limit, with_attachments))

    @extend_schema(
        operation_id="sync_push",
        request=SyncPush,
        responses={
            200: SyncPushResponseSerializer,
            **ERRORS,
            413: OpenApiResponse(ErrorSerializer, description="PAYLOAD_TOO_LARGE: more than the documented maxima."),
        },
        description=lazy(_push_description, str)(),
    )
    def post(self, request: Request) -> Response:
        # A body over CHATLIMA_MAX_BODY_BYTES never gets here: chatlima.middleware answers 413.
        return Response(push(request.user, request.data))
