"""srtm: Service Request Traffic Management.

Share a message gateway's finite back-end capacity across its Service Users fairly,
stably and scalably (``srtm`` and ``srtm.middleware``), and send Service Requests from
a User's back end so that urgent ones go first and throttling is honoured
(``srtm.client``).
"""

import importlib
import warnings

from srtm._errors import PolicyError, SrtmError, StorageError
from srtm.gate import Decision, Gate
from srtm.identity import (
    DEFAULT_POOL,
    FrontEndTrust,
    Identity,
    RequestView,
    Unidentified,
    identify_by_client_certificate,
    identify_by_headers,
    pool_by_header,
    pool_by_path_prefix,
)
from srtm.lease import LeasePolicy
from srtm.ledger import Reason
from srtm.policy import TrafficPolicy

#: The installed release (semantic versioning; see docs/stability.md).
__version__ = "0.1.0"

#: Machinery once exported here, and the module that keeps it (deprecated in 0.2).
_MOVED: dict[str, str] = {
    "Governor": "srtm.governor",
    "GovernorState": "srtm.governor",
    "Quota": "srtm.ledger",
    "fair_share": "srtm.fairshare",
}


def __getattr__(name: str) -> object:
    """Resolve a name moved off the top level, warning where it lives now."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'srtm' has no attribute {name!r}")
    warnings.warn(
        f"srtm.{name} is deprecated; import it as 'from {module} import {name}'",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_POOL",
    "Decision",
    "FrontEndTrust",
    "Gate",
    "Identity",
    "LeasePolicy",
    "PolicyError",
    "Reason",
    "RequestView",
    "SrtmError",
    "StorageError",
    "TrafficPolicy",
    "Unidentified",
    "__version__",
    "identify_by_client_certificate",
    "identify_by_headers",
    "pool_by_header",
    "pool_by_path_prefix",
]
