"""HTTP adapters over the gate: ``ASGITrafficManager`` and ``WSGITrafficManager``."""

from srtm.middleware.asgi import ASGITrafficManager
from srtm.middleware.wsgi import WSGITrafficManager

__all__ = ["ASGITrafficManager", "WSGITrafficManager"]
