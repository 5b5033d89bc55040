"""The runaway back end: a Supplier's system that floods the gateway with bulk reads.

Run as a separate process (``python -m srtm.demo._runaway``), as a broken system would
be: it bypasses its own client entirely (no queue, no pacing, no Retry-After) and posts
bulk reads on several connections as fast as they go, between two wall-clock times.
Its own CPU does not compete with the gateway's process. It prints a JSON line with
the status codes it got when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter

import httpx

__all__ = ["flood", "main"]

_BODY = (
    b'<Request xmlns="http://www.dccinterface.co.uk/ServiceUserGateway" schemaVersion="4.1">'
    b"<Header><ServiceReferenceVariant>4.8.1</ServiceReferenceVariant></Header></Request>"
)


async def flood(
    url: str, user_id: str, start: float, stop: float, connections: int
) -> Counter[str]:
    """Post bulk reads from ``start`` to ``stop`` (wall clock) on ``connections`` connections."""
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {
        "X-Service-User-ID": user_id,
        "X-DUIS-Version": "4.1",
        "Content-Type": "application/xml",
    }
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=10) as http:

        async def one_connection() -> None:
            while (now := time.time()) < stop:
                if now < start:
                    await asyncio.sleep(min(start - now, 0.5))  # until the incident begins
                    continue
                try:
                    response = await http.post(
                        "/sr", content=_BODY, headers={"X-Request-ID": uuid.uuid4().hex}
                    )
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)  # the gateway went away: do not spin
                else:
                    statuses[str(response.status_code)] += 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srtm.demo._runaway", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--start", type=float, required=True, help="wall-clock time to begin")
    parser.add_argument("--stop", type=float, required=True, help="wall-clock time to end")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args(argv)
    statuses = asyncio.run(flood(args.url, args.user, args.start, args.stop, args.connections))
    print(json.dumps(dict(statuses)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
