"""srtm: Service Request Traffic Management.

Share a message gateway's finite back-end capacity across its Service Users fairly,
stably and scalably (``srtm`` and ``srtm.middleware``), and send Service Requests from
a User's back end so that urgent ones go first and throttling is honoured
(``srtm.client``).
"""

from srtm._errors import PolicyError, SrtmError, StorageError
from srtm.fairshare import fair_share
from srtm.gate import Decision, Gate
from srtm.governor import Governor, GovernorState
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
from srtm.ledger import Quota, Reason
from srtm.policy import TrafficPolicy

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_POOL",
    "Decision",
    "FrontEndTrust",
    "Gate",
    "Governor",
    "GovernorState",
    "Identity",
    "LeasePolicy",
    "PolicyError",
    "Quota",
    "Reason",
    "RequestView",
    "SrtmError",
    "StorageError",
    "TrafficPolicy",
    "Unidentified",
    "__version__",
    "fair_share",
    "identify_by_client_certificate",
    "identify_by_headers",
    "pool_by_header",
    "pool_by_path_prefix",
]
