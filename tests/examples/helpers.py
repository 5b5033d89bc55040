"""What every example gateway must do: 200, 401 without identity, 429/503 with Retry-After."""

from __future__ import annotations

import time

import httpx

#: The Suppliers of examples/traffic.py (allocations 25% and 10% of capacity).
SUPPLIER_A = "90-B3-D5-1F-30-01-00-00"
SUPPLIER_B = "90-B3-D5-1F-30-02-00-00"
SR = b"<Request/>"


def headers(user: str, duis: str = "4.1") -> dict[str, str]:
    """What the TLS-terminating front end sets for a User."""
    return {"X-Service-User-ID": user, "X-DUIS-Version": duis}


def first_refusal(http: httpx.Client, user: str, duis: str, within: float = 60.0) -> httpx.Response:
    """Send SRs one after another as ``user`` until one is refused; that refusal."""
    deadline = time.monotonic() + within
    sent = 0
    while time.monotonic() < deadline:
        response = http.post("/sr", content=SR, headers=headers(user, duis))
        sent += 1
        if response.status_code != 200:
            return response
    raise AssertionError(f"{sent} SRs in {within:.0f} s and none refused")


def assert_refusal(response: httpx.Response, status: int, user: str) -> None:
    """A refusal as DESIGN.md says: status, Retry-After in whole seconds >= 1, a JSON body."""
    assert response.status_code == status, (response.status_code, response.text)
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    body = response.json()
    assert body["user"] == user
    assert body["retry_after"] == int(retry_after)
    assert body["error"] in {"throttled", "capacity"}


def check_gateway(url: str) -> None:
    """200 for a User, 200 for the exempt probe, 401 without identity, and throttling."""
    with httpx.Client(base_url=url, timeout=30) as http:
        ok = http.post("/sr", content=SR, headers=headers(SUPPLIER_A))
        assert ok.status_code == 200, ok.text
        # The app saw the User srtm admitted, and the RateLimit fields were added.
        assert ok.json() == {"accepted": True, "user": SUPPLIER_A, "bytes": len(SR)}
        assert "ratelimit" in ok.headers
        assert "ratelimit-policy" in ok.headers

        probe = http.get("/health")  # exempt: no identity needed
        assert probe.status_code == 200
        assert probe.json()["status"] == "ok"
        # fastapi_app also reports from the gate it holds (handed to add_middleware)
        assert probe.json().get("store_degraded", False) is False

        anonymous = http.post("/sr", content=SR)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "unidentified"

        # B alone floods: traffic management engages and holds B to the budget (16 a
        # window); on DUIS 4.1 a User-limit refusal is 429. Until it engages the hard cap
        # (20 a window) may refuse first with 503 for everyone: keep going past those.
        deadline = time.monotonic() + 60
        refused = first_refusal(http, SUPPLIER_B, "4.1")
        while refused.status_code == 503 and time.monotonic() < deadline:
            assert_refusal(refused, 503, SUPPLIER_B)
            assert refused.headers["X-SRTM-Refused"] == "capacity"
            refused = first_refusal(http, SUPPLIER_B, "4.1")
        assert_refusal(refused, 429, SUPPLIER_B)
        assert refused.headers["X-SRTM-Refused"] == "user-limit"
        assert refused.json()["error"] == "throttled"

        # The same User on an earlier DUIS version is refused with 503.
        assert_refusal(first_refusal(http, SUPPLIER_B, "3.2"), 503, SUPPLIER_B)

        # A, within its allocation, is untouched while B is throttled.
        assert http.post("/sr", content=SR, headers=headers(SUPPLIER_A)).status_code == 200
