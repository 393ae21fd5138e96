"""Conversations CRUD and mobile sync over REST: thin doors onto chat.sync."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from chat import sync
from chat.models import Conversation
from chat.payloads import conversation_payload, message_payload
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
    SyncPushSerializer,
)
from chatlima.errors import ClientError
from usage.models import ModelPrice

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="INVALID_MESSAGE or MODEL_UNAVAILABLE"),
    401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
    429: OpenApiResponse(ErrorSerializer, description="RATE_LIMITED"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="CONVERSATION_NOT_FOUND")}


def _own_conversation(request: Request, public_id: str) -> Conversation:
    """The caller's live conversation; anyone else's is indistinguishable from a missing one."""
    conv = Conversation.objects.for_user(request.user).filter(public_id=public_id).first()
    if conv is None:
        raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.")
    return conv


def _check_model(model: str | None) -> None:
    if not model or model == settings.CHATLIMA_DEFAULT_MODEL:
        return
    if not ModelPrice.objects.filter(model_id=model).exists():
        raise ClientError("MODEL_UNAVAILABLE", f"Unknown model {model!r}.", {"model": "unknown"})


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
    @extend_schema(
        operation_id="conversations_list",
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, description="The `next` link's cursor."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="Page size, at most 200."),
        ],
        responses={200: ConversationPageSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        paginator = ConversationPagination()
        try:
            page = paginator.paginate_queryset(Conversation.objects.for_user(request.user), request, view=self)
        except NotFound as exc:  # DRF's answer to a malformed cursor
            raise ClientError("INVALID_MESSAGE", "Invalid cursor.", {"cursor": "invalid"}) from exc
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
        conv, created = sync.create_conversation(
            request.user,
            public_id=data.get("id"),
            title=data.get("title", ""),
            model=data.get("model", ""),
            system_prompt=data.get("system_prompt", ""),
        )
        return Response(conversation_payload(conv), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ConversationDetailView(APIView):
    @extend_schema(operation_id="conversations_retrieve", responses={200: ConversationDetailSerializer, **ERRORS, **NOT_FOUND})
    def get(self, request: Request, public_id: str) -> Response:
        conv = _own_conversation(request, public_id)
        data = conversation_payload(conv)
        data["messages"] = [message_payload(m) for m in conv.messages.select_related("user_message")]
        return Response(data)

    @extend_schema(
        operation_id="conversations_partial_update",
        request=ConversationWriteSerializer,
        responses={200: ConversationSerializer, **ERRORS, **NOT_FOUND},
    )
    def patch(self, request: Request, public_id: str) -> Response:
        conv = _own_conversation(request, public_id)
        data = _validated(ConversationWriteSerializer, request.data)
        _check_model(data.get("model"))
        conv = sync.update_conversation(conv, dict(data))
        return Response(conversation_payload(conv))

    @extend_schema(
        operation_id="conversations_destroy",
        responses={204: OpenApiResponse(description="Deleted (a tombstone that sync reports)."), **ERRORS, **NOT_FOUND},
    )
    def delete(self, request: Request, public_id: str) -> Response:
        sync.delete_conversation(_own_conversation(request, public_id))
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
            OpenApiParameter("cursor", OpenApiTypes.STR, description="The `next` link's cursor."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="Page size, at most 500."),
        ],
        responses={200: MessagePageSerializer, **ERRORS, **NOT_FOUND},
        description="The conversation's messages, oldest first, a page at a time (for long conversations).",
    )
    def get(self, request: Request, public_id: str) -> Response:
        conv = _own_conversation(request, public_id)
        paginator = MessagePagination()
        try:
            page = paginator.paginate_queryset(conv.messages.select_related("user_message"), request, view=self)
        except NotFound as exc:
            raise ClientError("INVALID_MESSAGE", "Invalid cursor.", {"cursor": "invalid"}) from exc
        return paginator.get_paginated_response([message_payload(m) for m in page])


class SyncView(APIView):
    throttle_classes = [UserRateThrottle, AnonRateThrottle, ScopedRateThrottle]
    throttle_scope = "sync"

    @extend_schema(
        operation_id="sync_pull",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.STR, description="The cursor of the last pull or push; absent: everything."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"Conversations per page, 1 to {sync.PULL_MAX_LIMIT}."),
        ],
        responses={200: SyncPullResponseSerializer, **ERRORS},
        description="Conversations changed after `since`, with every message and all token figures. "
        "Follow `cursor` while `has_more` is true.",
    )
    def get(self, request: Request) -> Response:
        limit = sync.parse_limit(request.query_params.get("limit"))
        return Response(sync.pull(request.user, request.query_params.get("since"), limit))

    @extend_schema(
        operation_id="sync_push",
        request=SyncPushSerializer,
        responses={
            200: SyncPushResponseSerializer,
            **ERRORS,
            413: OpenApiResponse(ErrorSerializer, description="PAYLOAD_TOO_LARGE: more than the documented maxima."),
        },
        description=f"All or nothing and idempotent. At most {sync.MAX_PUSH_CONVERSATIONS} conversations, "
        f"{sync.MAX_PUSH_MESSAGES} messages and {sync.MAX_PUSH_DELETED} deleted ids per body. Derived fields are "
        "ignored; pushed token figures never count against a budget.",
    )
    def post(self, request: Request) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            raise ClientError(
                "PAYLOAD_TOO_LARGE", f"A push body is at most {limit} bytes; split the history into several pushes."
            )
        return Response(sync.push(request.user, request.data))
