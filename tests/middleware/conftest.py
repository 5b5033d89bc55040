"""Real HTTP servers in threads: uvicorn for ASGI apps, waitress for WSGI apps."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn
import waitress
from waitress.server import BaseWSGIServer

from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on loopback; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # uvicorn sets `started` once it listens; poll it (uvicorn offers no event to wait on).
    for _ in range(2000):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.005)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_wsgi(app: Callable[..., Any], threads: int = 16) -> Iterator[str]:
    """Serve a WSGI app with waitress on loopback; yields its base URL."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    assert isinstance(server, BaseWSGIServer)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Close every socket from the server's own loop thread: closing them from this
        # thread while the loop sits in select() gives "Bad file descriptor" there.
        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()

        try:
            server.trigger.pull_trigger(close_all)
        except OSError:
            # The trigger's pipe is gone (seen once in ~1,100 tests under full-suite load,
            # at teardown only, after the test's assertions had passed): close from here.
            close_all()
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
