"""The usage API: models and prices, stats, history, daily series and CSV export.

Thin doors onto usage.queries; every answer is limited to the caller's own data.
"""

from __future__ import annotations

import csv

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatlima.params import int_param, int_schema, query_param
from usage import by_token, queries
from usage.serializers import (
    DailySerializer,
    HistorySerializer,
    ModelListSerializer,
    StatsSerializer,
)

ErrorSchema = inline_serializer(
    "UsageError",
    {"error": inline_serializer("UsageErrorDetail", {"code": serializers.CharField(), "message": serializers.CharField(), "details": serializers.DictField()})},
)
ERRORS = {
    400: OpenApiResponse(ErrorSchema, description="INVALID_MESSAGE: a bad date or paging value"),
    401: OpenApiResponse(ErrorSchema, description="UNAUTHENTICATED"),
    429: OpenApiResponse(ErrorSchema, description="RATE_LIMITED"),
}
DATES = "An ISO 8601 day (2025-07-22) or timestamp (RFC 3339; no offset: UTC), from 1970 to 2100."
DATE_PARAMS = [
    OpenApiParameter("start_date", queries.DATE_PARAM_SCHEMA, description=f"{DATES} Inclusive."),
    OpenApiParameter("end_date", queries.DATE_PARAM_SCHEMA, description=f"{DATES} Inclusive; not before start_date."),
    OpenApiParameter("api_token", {"type": "integer", "minimum": 1, "maximum": by_token.MAX_TOKEN_ID},
                     description="Only the usage of this API token (an id of GET /api/v1/auth/tokens)."),
]
HISTORY_OFFSET_MAX = 10_000_000


def _dates(request: Request) -> tuple[str | None, str | None]:
    return query_param(request, "start_date"), query_param(request, "end_date")


def _moments(request: Request):
    return queries.moment_range(*_dates(request))


@extend_schema(
    operation_id="models_list",
    parameters=[
        OpenApiParameter("q", {"type": "string", "minLength": 1},
                         description="Only models whose id or display name contains this (any case)."),
        OpenApiParameter("provider", {"type": "string", "minLength": 1}, description="Only this provider's models."),
    ],
    responses={200: ModelListSerializer, **ERRORS},
)
@api_view(["GET"])
def models_list(request: Request) -> Response:
    return Response(queries.model_catalogue(query_param(request, "q"), query_param(request, "provider")))


@extend_schema(operation_id="usage_stats", parameters=DATE_PARAMS, responses={200: StatsSerializer, **ERRORS})
@api_view(["GET"])
def usage_stats(request: Request) -> Response:
    since, until = _moments(request)
    token = by_token.token_filter(request.user, query_param(request, "api_token"))
    rows = queries.usage_logs(request.user, since, until, token)
    return Response({"stats": queries.stats_by_model(request.user, since, until, token),
                     "by_token": by_token.stats_by_token(rows), "by_door": by_token.stats_by_door(rows)})


@extend_schema(
    operation_id="usage_history",
    parameters=[
        *DATE_PARAMS,
        OpenApiParameter("limit", int_schema(1, queries.HISTORY_MAX_LIMIT), description=f"Default {queries.HISTORY_DEFAULT_LIMIT}."),
        OpenApiParameter("offset", int_schema(0, HISTORY_OFFSET_MAX), description="Rows to skip."),
    ],
    responses={200: HistorySerializer, **ERRORS},
)
@api_view(["GET"])
def usage_history(request: Request) -> Response:
    since, until = _moments(request)
    limit = int_param(request, "limit", queries.HISTORY_DEFAULT_LIMIT, 1, queries.HISTORY_MAX_LIMIT)
    offset = int_param(request, "offset", 0, 0, HISTORY_OFFSET_MAX)
    token = by_token.token_filter(request.user, query_param(request, "api_token"))
    return Response(queries.history(request.user, since, until, limit, offset, token))


@extend_schema(
    operation_id="usage_daily",
    parameters=[
        OpenApiParameter("start_date", queries.DATE_PARAM_SCHEMA,
                         description=f"First day (the user's days); default 29 days before end_date. {DATES}"),
        OpenApiParameter("end_date", queries.DATE_PARAM_SCHEMA,
                         description=f"Last day, default today; at most {queries.DAILY_MAX_DAYS} days after start_date. {DATES}"),
    ],
    responses={200: DailySerializer, **ERRORS},
)
@api_view(["GET"])
def usage_daily(request: Request) -> Response:
    first, last = queries.day_range(request.user, *_dates(request))
    return Response({"days": queries.daily(request.user, first, last)})


class CSVContentNegotiation(BaseContentNegotiation):
    """The export answers CSV whatever the client asks for; its errors are the contract's JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _Echo:
    def write(self, value: str) -> str:
        return value


class UsageExportView(APIView):
    content_negotiation_class = CSVContentNegotiation

    @extend_schema(
        operation_id="usage_export_csv",
        parameters=DATE_PARAMS,
        responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS},
        description="The caller's usage log rows, newest first, streamed as CSV.",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        since, until = _moments(request)
        token = by_token.token_filter(request.user, query_param(request, "api_token"))
        writer = csv.writer(_Echo())
        rows = (writer.writerow(row) for row in queries.csv_rows(request.user, since, until, token))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="chatlima-usage.csv"'
        return response


usage_export = UsageExportView.as_view()
