"""Attachments over REST (API.md "Attachments"): thin doors onto chat.attachments.store.

POST takes multipart with a `file` field (the one API route that takes multipart), or JSON
`{"url": "https://..."}`. Same auth as the rest of the API; a stranger's conversation is 404.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.attachments import store
from chat.attachments.fetch import URL_CHARS
from chat.attachments.payload import AttachmentSerializer, attachment_payload
from chat.ids import ID_SCHEMA_PATTERN
from chat.serializers import ErrorSerializer
from chatlima.errors import ClientError


class AttachmentListSerializer(serializers.Serializer):
    results = AttachmentSerializer(many=True)


class FileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="Text, Markdown, code, CSV, JSON or PDF.")


class UrlRequestSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=URL_CHARS, help_text="An http or https URL the server fetches.")


PUBLIC_ID = OpenApiParameter(
    "public_id", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=ID_SCHEMA_PATTERN, description="The conversation's id.",
)
ATTACHMENT_ID = OpenApiParameter(
    "attachment_id", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=ID_SCHEMA_PATTERN, description="The attachment's id.",
)
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="INVALID_MESSAGE: an unreadable or unsupported file, a bad "
                         "or refused URL, too many attachments"),
    401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
    404: OpenApiResponse(ErrorSerializer, description="CONVERSATION_NOT_FOUND (or the attachment: NOT_FOUND)"),
}
TOO_LARGE = {413: OpenApiResponse(ErrorSerializer, description="PAYLOAD_TOO_LARGE: a file, a page or the "
                                  "conversation's attachment tokens over their limits")}


def _url_of(data) -> str:
    if not isinstance(data, dict) or set(data) != {"url"} or not isinstance(data["url"], str):
        raise ClientError("INVALID_MESSAGE", 'The body must be {"url": "https://..."} or a multipart file.',
                          {"field": "url"})
    return data["url"]


class AttachmentListView(APIView):
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(
        operation_id="attachments_list", parameters=[PUBLIC_ID],
        responses={200: AttachmentListSerializer, **ERRORS},
        description="The conversation's attachments, oldest first (without their text).",
    )
    def get(self, request: Request, public_id: str) -> Response:
        conversation = store.own_conversation(request.user, public_id)
        return Response({"results": [attachment_payload(a) for a in store.list_for(conversation)]})

    @extend_schema(
        operation_id="attachments_create", parameters=[PUBLIC_ID],
        request={"multipart/form-data": FileUploadSerializer, "application/json": UrlRequestSerializer},
        responses={201: AttachmentSerializer, **ERRORS, **TOO_LARGE},
        description="Attach a file (multipart, field `file`) or a URL (JSON `{\"url\"}`, fetched by the server; "
        "private, loopback and link-local addresses are refused). Every later message of the conversation "
        "carries its text.",
    )
    def post(self, request: Request, public_id: str) -> Response:
        conversation = store.own_conversation(request.user, public_id)
        if request.content_type.startswith("multipart/"):
            upload = request.FILES.get("file")
            if upload is None or len(request.FILES) != 1:
                raise ClientError("INVALID_MESSAGE", "Send one file, in the field `file`.", {"field": "file"})
            attachment = store.add_file(conversation, upload)
        else:
            attachment = store.add_url(conversation, _url_of(request.data))
        return Response(attachment_payload(attachment), status=status.HTTP_201_CREATED)


class AttachmentDetailView(APIView):
    @extend_schema(
        operation_id="attachments_destroy", parameters=[PUBLIC_ID, ATTACHMENT_ID],
        responses={204: OpenApiResponse(description="Removed: later messages no longer carry it."), **ERRORS},
    )
    def delete(self, request: Request, public_id: str, attachment_id: str) -> Response:
        conversation = store.own_conversation(request.user, public_id)
        store.remove(store.own_attachment(conversation, attachment_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AttachmentRefetchView(APIView):
    @extend_schema(
        operation_id="attachments_refetch", parameters=[PUBLIC_ID, ATTACHMENT_ID], request=None,
        responses={200: AttachmentSerializer, **ERRORS, **TOO_LARGE},
        description="Fetch a URL attachment again: its text, tokens and fetched_at are replaced.",
    )
    def post(self, request: Request, public_id: str, attachment_id: str) -> Response:
        conversation = store.own_conversation(request.user, public_id)
        attachment = store.refetch(store.own_attachment(conversation, attachment_id))
        return Response(attachment_payload(attachment))
