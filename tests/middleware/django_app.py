"""A Django gateway under srtm's ASGI middleware, served by uvicorn in a subprocess.

Django's ``ASGIHandler`` does not speak lifespan (it raises for a lifespan scope), so
the middleware completes lifespan itself and still closes the gate at shutdown. The gate
here records its closing in the file ``SRTM_TEST_MARKER`` names, for the test to read.
"""

from __future__ import annotations

import os
from pathlib import Path

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="srtm-test-" + "k" * 40,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings)
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from srtm import TrafficPolicy  # noqa: E402
from srtm.aio.gate import AsyncGate  # noqa: E402
from srtm.middleware import ASGITrafficManager  # noqa: E402


def sr(request: HttpRequest) -> JsonResponse:
    """The gateway's SR endpoint: says whom srtm counted the request against."""
    scope = getattr(request, "scope", {})
    return JsonResponse({"user": scope.get("srtm.user")})


urlpatterns = [path("sr", sr)]


class RecordingGate(AsyncGate):
    """A real gate that writes a line to the marker file when it closes."""

    async def close(self) -> None:
        await super().close()
        _record_closing()


def _record_closing() -> None:
    marker = os.environ.get("SRTM_TEST_MARKER")
    if marker:
        with Path(marker).open("a") as out:
            out.write("closed\n")


gate = RecordingGate(TrafficPolicy(capacity=100))
app = ASGITrafficManager(get_asgi_application(), gate=gate, trusted_peers=["127.0.0.1"])
