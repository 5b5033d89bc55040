"""A Supplier's back end sending Service Requests through srtm.client.

    GATEWAY_URL=http://127.0.0.1:8000 python supplier_backend.py

It queues a batch of bulk reads (4.8.1), then sends a prepayment top-up (2.2), which
goes ahead of every read still waiting. The client paces itself from the gateway's
RateLimit fields; when the gateway refuses anyway (429/503 with Retry-After) it pauses
the whole User for at least that long and sends the refused SR again, with the same
request ID. Every SR ends as a response or an error handed back here: none is lost.
Settings: GATEWAY_URL, SUPPLIER_ID (default: Supplier B of traffic.py), BULK_READS (50).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter

from srtm.client import (
    ClientEvent,
    ServiceRequest,
    ServiceRequestClient,
    SRSettled,
    UserPaused,
)

SUPPLIER_B = "90-B3-D5-1F-30-02-00-00"


def read_xml(n: int) -> bytes:
    """A stand-in for a signed DUIS request (the gateway never looks inside)."""
    request_id = f"{SUPPLIER_B}:00-00:{n}"
    return f"<Request><Header><RequestID>{request_id}</RequestID></Header></Request>".encode()


def main() -> int:
    """Send the batch and the top-up; exit 0 when every SR was answered 200."""
    url = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")
    user = os.environ.get("SUPPLIER_ID", SUPPLIER_B)
    count = int(os.environ.get("BULK_READS", "50"))
    lock = threading.Lock()
    reads_done = 0

    def on_event(event: ClientEvent) -> None:  # called from the client's threads: lock
        nonlocal reads_done
        with lock:
            if isinstance(event, UserPaused):
                print(f"paused {event.pause:.2f} s after a {event.status_code}", flush=True)
            elif isinstance(event, SRSettled) and event.sr.variant == "4.8.1":
                reads_done += 1

    with ServiceRequestClient(
        base_url=url, user_id=user, duis_version="4.1", on_event=on_event
    ) as client:
        reads = [
            client.submit(ServiceRequest(variant="4.8.1", body=read_xml(n), path="/sr"))
            for n in range(count)
        ]
        top_up = client.send(ServiceRequest(variant="2.2", body=b"<Request/>", path="/sr"))
        with lock:
            ahead_of = count - reads_done
            print(
                f"top-up: {top_up.status_code}, answered ahead of {ahead_of} of the {count} reads"
            )
        statuses = Counter(read.result().status_code for read in reads)
    print("reads: " + ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items())))
    return 0 if top_up.status_code == 200 and statuses == Counter({200: count}) else 1


if __name__ == "__main__":
    sys.exit(main())
