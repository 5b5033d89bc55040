"""The gateway's two views: POST /sr for Service Requests, GET /health for probes."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST


@require_POST
def service_request(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"accepted": True, "user": _user(request), "bytes": len(request.body)})


def _user(request: HttpRequest) -> str:
    """The Service User srtm admitted this request for."""
    if "srtm.user" in request.META:  # WSGI: srtm's environ keys are Django's META
        return str(request.META["srtm.user"])
    scope = getattr(request, "scope", {})  # ASGI: the decision is in the scope
    return str(scope["srtm.decision"].user)


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [path("sr", service_request), path("health", health)]
