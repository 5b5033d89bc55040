"""The runaway back end: a Supplier's system that floods the gateway with bulk reads.

Run as a separate process (``python -m srtm.demo._runaway``), as a broken system would
be: it bypasses its own client entirely (no queue, no pacing, no Retry-After) and posts
bulk reads on several keep-alive connections, each sending its next request as soon as
the last is answered, between two wall-clock times, up to ``--rate`` SR/s in all.

It speaks plain HTTP/1.1 over asyncio streams rather than through an HTTP client
library: a broken back end has its own stack, and this one costs about a tenth of the
CPU per request, so the flood does not starve the gateway and the well-behaved
Suppliers of a small machine's cores. It prints a JSON line of the statuses it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

__all__ = ["flood", "main"]

_BODY = (
    b'<Request xmlns="http://www.dccinterface.co.uk/ServiceUserGateway" schemaVersion="4.1">'
    b"<Header><ServiceReferenceVariant>4.8.1</ServiceReferenceVariant></Header></Request>"
)


class _Pace:
    """Shared send slots: at most ``rate`` requests per second across the connections."""

    def __init__(self, rate: float | None, start: float) -> None:
        self.interval = 0.0 if rate is None else 1.0 / rate
        self.next = start

    async def slot(self) -> None:
        if not self.interval:
            return
        now = time.time()
        at = self.next = max(self.next + self.interval, now - 0.05)  # no catch-up burst
        if at > now:
            await asyncio.sleep(at - now)  # the next send slot


async def _connection(
    host: str, port: int, head: bytes, stop: float, pace: _Pace, statuses: Counter[str]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.time() < stop:
            await pace.slot()
            writer.write(head + b"X-Request-ID: " + uuid.uuid4().hex.encode() + b"\r\n\r\n" + _BODY)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if not status_line:
                raise ConnectionError("the gateway closed the connection")
            await reader.readexactly(length)
            statuses[status_line.split()[1].decode()] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def flood(
    url: str, user_id: str, start: float, stop: float, connections: int, rate: float | None
) -> Counter[str]:
    """Post bulk reads from ``start`` to ``stop`` (wall clock) on ``connections`` connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST /sr HTTP/1.1\r\nHost: {host}:{port}\r\nX-Service-User-ID: {user_id}\r\n"
        f"X-DUIS-Version: 4.1\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(_BODY)}\r\n"
    ).encode()
    statuses: Counter[str] = Counter()
    await asyncio.sleep(max(0.0, start - time.time()))  # until the incident begins
    pace = _Pace(rate, time.time())
    while time.time() < stop:
        results = await asyncio.gather(
            *(_connection(host, port, head, stop, pace, statuses) for _ in range(connections)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                statuses[type(result).__name__] += 1
                await asyncio.sleep(0.05)  # the gateway dropped us: reconnect, without spinning
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srtm.demo._runaway", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--start", type=float, required=True, help="wall-clock time to begin")
    parser.add_argument("--stop", type=float, required=True, help="wall-clock time to end")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=None, help="SR/s at most (default: no cap)")
    args = parser.parse_args(argv)
    statuses = asyncio.run(
        flood(args.url, args.user, args.start, args.stop, args.connections, args.rate)
    )
    print(json.dumps(dict(statuses)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
