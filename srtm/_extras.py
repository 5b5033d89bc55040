"""Optional parts of srtm and the extra that installs each.

The core install carries what the middleware and the client need. Redis, the demo and
simulator, and Prometheus metrics are extras; reaching one without it installed says
which extra to install rather than failing deep inside an import.
"""

from __future__ import annotations

import importlib.util

from srtm._errors import SrtmError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(SrtmError, ImportError):
    """A feature whose optional dependencies are not installed."""

    def __init__(self, feature: str, extra: str, missing: list[str]) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature} needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install 'srtm[{extra}]'"
        )


def require(feature: str, extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every module in ``modules`` can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(feature, extra, missing)
