"""Every example in examples/, started as its docstring says on a real server."""

from __future__ import annotations

import sys

import pytest

from tests.examples.conftest import example_env, run_example, uvicorn
from tests.examples.helpers import check_gateway

pytestmark = pytest.mark.e2e

#: Written by uvicorn once the app has answered lifespan.shutdown; srtm closes its gate
#: as that message passes, before the app answers it.
SHUTDOWN_DONE = "Application shutdown complete."
NO_LIFESPAN = "'lifespan' protocol appears unsupported"


@pytest.mark.parametrize("app", ["starlette_app:app", "fastapi_app:app"])
def test_asgi_example_on_uvicorn(app: str, port: int) -> None:
    with run_example(uvicorn(app, port), [port], example_env()) as server:
        check_gateway(server.url)
        log = server.stop()
    assert SHUTDOWN_DONE in log, log
    assert NO_LIFESPAN not in log, log


def test_flask_example_on_waitress(port: int) -> None:
    argv = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", "flask_app:app"]
    with run_example(argv, [port], example_env()) as server:
        check_gateway(server.url)


def test_django_wsgi_example_on_gunicorn(port: int) -> None:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "django_gateway.wsgi",
    ]
    with run_example(argv, [port], example_env()) as server:
        check_gateway(server.url)


def test_django_asgi_example_on_uvicorn_closes_its_gate_at_shutdown(port: int) -> None:
    argv = [*uvicorn("django_gateway.asgi:application", port), "--lifespan", "on"]
    with run_example(argv, [port], example_env()) as server:
        check_gateway(server.url)
        log = server.stop()
    # Django alone does not speak lifespan (uvicorn would fail to start with
    # --lifespan on); the example answers it, so the shutdown reached srtm.
    assert "Application startup complete." in log, log
    assert SHUTDOWN_DONE in log, log
