"""The headline, against the real gateway middleware (srtm.middleware.ASGITrafficManager).

A User far over its allocation queues 2,000 bulk reads; top-ups submitted mid-stream
complete long before the bulk reads queued earlier, and the back end behind the
middleware processes every SR exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from srtm import TrafficPolicy
from srtm.middleware import ASGITrafficManager

from .helpers import Facade, Reply, Request, ScriptApp, serve
from .test_client_e2e import check_top_up_run, run_top_up_scenario

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.e2e


def test_top_ups_overtake_bulk_reads_at_the_real_gateway(
    make_http_client: Callable[..., Facade],
) -> None:
    async def back_end(request: Request) -> Reply:
        return Reply(200, body=b"<Response/>")

    app = ScriptApp(back_end)
    # Budget 0.8 * 150 = 120 SR/s; user-a is allocated 40 and, alone, may use the budget.
    # The client sends unpaced, far faster than 120 SR/s, so traffic management engages
    # and refuses it: the User is throttled, pauses, and resumes, over and over.
    gateway = ASGITrafficManager(
        app,
        TrafficPolicy(
            capacity=150,
            threshold=0.8,
            allocations={"user-a": 40},
            default_allocation=0,
            window=1.0,
        ),
    )
    with serve(gateway, started=app.started) as url:
        run = run_top_up_scenario(
            make_http_client,
            url,
            n_bulk=2000,
            user_id="user-a",
            duis_version="4.1",
            max_in_flight=8,
            follow_rate_limit=False,
        )
    assert run.throttle_pauses >= 1
    check_top_up_run(run, [a.request_id for a in app.log])
