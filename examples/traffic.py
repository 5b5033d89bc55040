"""The gateway's traffic policy, shared by every example app here.

Deployment settings come from the environment, so the same code runs on a laptop
(``memory://``, one process) and on several nodes sharing one Redis:

- ``SRTM_STORAGE``: a ``limits`` storage URI; ``memory://`` (the default) counts in this
  process only, ``redis://host:6379/0`` shares the counts between gateway nodes.
- ``GATEWAY_NODES``: how many processes decide against that storage (each takes its
  share of capacity if the storage fails); 1 by default.
- ``GATEWAY_CAPACITY``: SR/s the back end can process; 1,350 (the DSP in March 2020) by
  default. The allocations are shares of it, so a staging gateway with a small capacity
  keeps the same proportions.
- ``GATEWAY_TRUSTED_PEERS``: comma-separated addresses or CIDRs of the TLS-terminating
  front ends allowed to set the identity headers; loopback by default (docs/trust.md).
"""

from __future__ import annotations

import os

from srtm import TrafficPolicy

#: Two Suppliers with allocations of their own; every other User shares one allocation.
SUPPLIER_A = "90-B3-D5-1F-30-01-00-00"
SUPPLIER_B = "90-B3-D5-1F-30-02-00-00"


def build_policy() -> TrafficPolicy:
    """The policy, from the environment (a bad value fails here with a clear PolicyError)."""
    capacity = float(os.environ.get("GATEWAY_CAPACITY", "1350"))
    return TrafficPolicy(
        capacity=capacity,  # SR/s the back end can process
        threshold=0.8,  # traffic management engages at 80% of it
        allocations={SUPPLIER_A: 0.25 * capacity, SUPPLIER_B: 0.1 * capacity},
        default_allocation=0.05 * capacity,  # shared by every User not named above
        storage=os.environ.get("SRTM_STORAGE", "memory://"),
        nodes=int(os.environ.get("GATEWAY_NODES", "1")),
    )


def trusted_peers() -> list[str]:
    """Who may vouch for the identity headers: the front ends' addresses (docs/trust.md)."""
    return os.environ.get("GATEWAY_TRUSTED_PEERS", "127.0.0.1,::1").split(",")
