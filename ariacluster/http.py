"""Shared HTTP pieces: the JSON error shape, pagination, the request-size guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    """409: a stale lease or a state that does not allow the action."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def error_body(message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": message, "detail": detail or {}}


def _messages(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _messages(v) for k, v in value.items()}
    if isinstance(value, list):
        flat = [_messages(v) for v in value]
        return flat
    return str(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every API error as ``{"error": ..., "detail": {field: [messages]}}``."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(getattr(exc, "http_status", None), int):
        # A service refusal that names its own status (e.g. 429 for a full queue).
        refusal = exceptions.APIException(str(exc))
        refusal.status_code = exc.http_status  # type: ignore[attr-defined]
        exc = refusal
    elif isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            exc = exceptions.ValidationError(exc.message_dict)
        else:
            exc = exceptions.ValidationError({"non_field_errors": exc.messages})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _messages(detail)
            non_field = fields.pop("non_field_errors", None)
            message = "; ".join(non_field) if non_field else "Invalid input."
            if non_field:
                fields["non_field_errors"] = non_field
            response.data = error_body(message, fields)
        else:
            messages = _messages(detail)
            text = "; ".join(messages) if isinstance(messages, list) else str(messages)
            response.data = error_body(text, {"non_field_errors": messages})
    else:
        reason = getattr(exc, "detail", None)
        response.data = error_body(str(reason) if reason is not None else str(exc))
    return response


class RequestSizeLimitMiddleware:
    """Refuse bodies over `security.max_request_bytes` with 413 before anything parses them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.ARIACLUSTER.security.max_request_bytes
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return JsonResponse(
                error_body(f"Request body too large: {length} bytes, the limit is {limit}."),
                status=413,
            )
        return self.get_response(request)


def _policy(style_src: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {style_src}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "object-src 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = _policy("'self'")
# Swagger UI and DRF's browsable API set inline styles; scripts stay 'self' only everywhere.
API_PAGES_POLICY = _policy("'self' 'unsafe-inline'")


class ContentSecurityPolicyMiddleware:
    """Send a CSP without 'unsafe-inline' or 'unsafe-eval' on every HTML response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "text/html" in response.get("Content-Type", ""):
            policy = (
                API_PAGES_POLICY if request.path.startswith("/api/") else (CONTENT_SECURITY_POLICY)
            )
            response.setdefault("Content-Security-Policy", policy)
        return response
