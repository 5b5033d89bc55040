"""WSGI entry point: ``gunicorn django_gateway.wsgi`` (from the examples folder)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from traffic import build_policy, trusted_peers  # examples/traffic.py

from srtm.middleware import WSGITrafficManager

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_gateway.settings")

# Wrapping the application, rather than a MIDDLEWARE entry, keeps refusals out of
# Django's request cycle: a throttled SR costs no view, no ORM and no body read.
application = WSGITrafficManager(
    get_wsgi_application(), build_policy(), trusted_peers=trusted_peers(), exempt_paths={"/health"}
)
