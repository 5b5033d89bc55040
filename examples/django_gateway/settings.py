"""Settings of the example Django gateway: just enough to serve two views."""

from __future__ import annotations

import os

# Set DJANGO_SECRET_KEY in any real deployment; the default only serves this example.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
ROOT_URLCONF = "django_gateway.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []  # srtm wraps the whole application instead (see wsgi.py, asgi.py)
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
