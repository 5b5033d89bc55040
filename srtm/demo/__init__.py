"""``srtm demo``: a real gateway, five Suppliers, and one of them running amok.

A small back-end app behind :class:`srtm.middleware.ASGITrafficManager` (embedded
``memory://`` storage) is served by uvicorn on 127.0.0.1. Five simulated Suppliers send
top-ups, price updates and bulk reads through :class:`srtm.client.AsyncServiceRequestClient`,
within their allocations; part-way through, one Supplier's back end breaks and floods
bulk reads as fast as it can, bypassing its client. The terminal shows each User's
offered and admitted rates, refusals, whether traffic management is on, and how long the
well-behaved Users' top-ups take; at the end a verdict, computed from the measurements,
and a PNG of the run.

    from srtm.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(duration=30), out=Path("srtm-demo.png"))
    assert report.passed
"""

from srtm.demo._config import DEFAULT_SUPPLIERS, DemoConfig, DemoConfigError, Supplier
from srtm.demo._measure import Check, Report
from srtm.demo._run import run_demo

__all__ = [
    "DEFAULT_SUPPLIERS",
    "Check",
    "DemoConfig",
    "DemoConfigError",
    "Report",
    "Supplier",
    "run_demo",
]
